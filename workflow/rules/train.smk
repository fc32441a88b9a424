# Training: denoiser pre-training, then MoDL, SMUG, Weighted SMUG from the pre-trained denoiser,
# and RS-E2E from the trained MoDL. One rule, one script; the spec carries the stage's settings, so
# changing a setting retrains exactly the models it affects.


rule train:
    input:
        unpack(training_inputs),
    output:
        model="results/models/{model}/model.pt",
        metrics="results/models/{model}/metrics.csv",
    log:
        "results/logs/train/{model}.log",
    benchmark:
        "results/benchmarks/rules/train_{model}.tsv"
    wildcard_constraints:
        model="|".join(TRAINED_MODELS),
    conda:
        "../../environment.yml"
    threads: job_threads("train")
    resources:
        **job_resources("train"),
    params:
        spec=training_spec,
        init=init_flag,
        sens=sens_dir_flag,
        checkpoint="results/checkpoints/{model}.pt",
        device=config["device"],
    shell:
        "python scripts/train.py --spec {params.spec:q} --train @{input.train:q} --val @{input.val:q}"
        " --mask {input.mask:q} {params.sens:q} {params.init:q} --device {params.device:q}"
        " --model {output.model:q} --metrics {output.metrics:q} --checkpoint {params.checkpoint:q}"
        " --threads {threads} > {log:q} 2>&1"


rule tune_classical:
    input:
        unpack(classical_inputs),
    output:
        model="results/models/cs_{method}/model.pt",
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
        lams=config["classical"]["lams"],
        num_iters=config["classical"]["num_iters"],
        val_slices=config["classical"]["val_slices"],
        wavelet=config["classical"]["wavelet"],
        levels=config["classical"]["levels"],
        solver=config["classical"]["tv_solver"],
        sens=sens_dir_flag,
        device=config["device"],
    shell:
        "python scripts/tune_classical.py --method {wildcards.method:q} --lams {params.lams:q}"
        " --num-iters {params.num_iters:q} --val @{input.val:q} {params.sens:q} --mask {input.mask:q}"
        " --val-slices {params.val_slices:q} --wavelet {params.wavelet:q} --levels {params.levels:q}"
        " --solver {params.solver:q} --device {params.device:q}"
        " --out {output.model:q} --table {output.table:q} --threads {threads} > {log:q} 2>&1"


rule untrained_method:
    output:
        "results/models/untrained/model.pt",
    log:
        "results/logs/train/untrained.log",
    benchmark:
        "results/benchmarks/rules/untrained_method.tsv"
    conda:
        "../../environment.yml"
    threads: job_threads("untrained_method")
    resources:
        **job_resources("untrained_method"),
    params:
        settings=untrained_settings(),
    shell:
        "python scripts/write_method.py --kind untrained --settings {params.settings:q} --out {output:q}"
        " --threads {threads} > {log:q} 2>&1"


rule zero_filled_method:
    output:
        "results/models/zero_filled/model.pt",
    log:
        "results/logs/train/zero_filled.log",
    benchmark:
        "results/benchmarks/rules/zero_filled_method.tsv"
    conda:
        "../../environment.yml"
    threads: job_threads("zero_filled_method")
    resources:
        **job_resources("zero_filled_method"),
    shell:
        "python scripts/write_method.py --kind zero_filled --out {output:q} --threads {threads} > {log:q} 2>&1"
