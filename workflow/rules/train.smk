# Training: denoiser pre-training, then MoDL, SMUG, Weighted SMUG from the pre-trained denoiser,
# and RS-E2E from the trained MoDL, and the ablations' variants of them. One rule, one script; the
# spec carries the stage's settings, so changing a setting retrains exactly the models it affects.


rule train:
    input:
        unpack(training_inputs),
    output:
        model="results/models/{model}/seed{seed}/model.pt",
        metrics="results/models/{model}/seed{seed}/metrics.csv",
    log:
        "results/logs/train/{model}_seed{seed}.log",
    benchmark:
        "results/benchmarks/rules/train_{model}_seed{seed}.tsv"
    wildcard_constraints:
        model=TRAINABLE_PATTERN,
        seed=r"\d+",
    conda:
        "../../environment.yml"
    threads: job_threads("train")
    resources:
        **job_resources("train"),
    params:
        spec=training_spec,
        checkpoint="results/checkpoints/{model}/seed{seed}.pt",
        ranks=train_ranks,
        device=config["device"],
        checkpoint_unrolls=config["memory"]["checkpoint_unrolls"],
        sample_chunk=config["memory"]["sample_chunk"],
    script:
        "../../scripts/train.py"


rule tune_classical:
    input:
        unpack(lambda w: split_inputs("val", "val", config["data"]["train_anatomy"])),
    output:
        out="results/models/cs_{method}/model.pt",
        table="results/models/cs_{method}/tuning.csv",
    log:
        "results/logs/train/cs_{method}.log",
    benchmark:
        "results/benchmarks/rules/tune_cs_{method}.tsv"
    wildcard_constraints:
        method="l1_wavelet|tv",
    conda:
        "../../environment.yml"
    threads: job_threads("tune_classical")
    resources:
        **job_resources("tune_classical"),
    params:
        method="{method}",
        lams=config["classical"]["lams"],
        num_iters=config["classical"]["num_iters"],
        val_slices=config["classical"]["val_slices"],
        wavelet=config["classical"]["wavelet"],
        levels=config["classical"]["levels"],
        solver=config["classical"]["tv_solver"],
        device=config["device"],
    script:
        "../../scripts/tune_classical.py"


rule untrained_method:
    output:
        out="results/models/untrained/seed{seed}/model.pt",
    log:
        "results/logs/train/untrained_seed{seed}.log",
    benchmark:
        "results/benchmarks/rules/untrained_method_seed{seed}.tsv"
    wildcard_constraints:
        seed=r"\d+",
    conda:
        "../../environment.yml"
    threads: job_threads("untrained_method")
    resources:
        **job_resources("untrained_method"),
    params:
        kind="untrained",
        settings=lambda w: plan.untrained_settings(config, seed_of(w)),
    script:
        "../../scripts/write_method.py"


rule zero_filled_method:
    output:
        out="results/models/zero_filled/model.pt",
    log:
        "results/logs/train/zero_filled.log",
    benchmark:
        "results/benchmarks/rules/zero_filled_method.tsv"
    conda:
        "../../environment.yml"
    threads: job_threads("zero_filled_method")
    resources:
        **job_resources("zero_filled_method"),
    params:
        kind="zero_filled",
    script:
        "../../scripts/write_method.py"


# fastMRI's published weights (config `pretrained`), translated into this project's model record.
rule import_checkpoint:
    input:
        checkpoint=lambda w: config["pretrained"][w.method]["path"],
    output:
        out="results/models/{method}/model.pt",
    log:
        "results/logs/train/import_{method}.log",
    benchmark:
        "results/benchmarks/rules/import_checkpoint_{method}.tsv"
    wildcard_constraints:
        method="|".join(pretrained_methods()),
    conda:
        "../../environment.yml"
    threads: job_threads("import_checkpoint")
    resources:
        **job_resources("import_checkpoint"),
    params:
        architecture=lambda w: METHODS[w.method].architecture,
        sizes=lambda w: config["pretrained"][w.method]["sizes"],
    script:
        "../../scripts/import_checkpoint.py"
