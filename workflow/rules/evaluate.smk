# Evaluation: every model under every condition (clean, attacks, random noise, generator
# transfer, sampling-rate shift, unrolling shift, anatomy shift, small features), scored per test
# volume with fastMRI's metrics; and trained networks adapted by test-time training.


rule evaluate:
    input:
        unpack(evaluation_inputs),
    output:
        scores="results/eval/{model}.csv",
        recons=directory("results/recons/{model}"),
    log:
        "results/logs/evaluate/{model}.log",
    benchmark:
        "results/benchmarks/rules/evaluate_{model}.tsv"
    conda:
        "../../environment.yml"
    threads: job_threads("evaluate")
    resources:
        **job_resources("evaluate"),
    params:
        sens=sens_dir_flag,
        shift=shift_flag,
        small_features=small_features_flag(),
        test_slices=test_slices_flag(),
        batch_size=config["evaluation"]["batch_size"],
        unrolls=config["evaluation"]["unrolls"],
        seed=config["seed"],
        device=config["device"],
    shell:
        "python scripts/evaluate.py --model {input.model:q} --test @{input.test:q} {params.sens:q}"
        " --train-mask {input.mask:q} --masks {input.masks:q} --attacks {input.attacks:q}"
        " --generators {input.generators:q} --unrolls {params.unrolls:q} {params.shift:q}"
        " {params.small_features:q} {params.test_slices:q} --batch-size {params.batch_size:q}"
        " --seed {params.seed:q} --device {params.device:q} --out {output.scores:q}"
        " --recon-dir {output.recons:q} --threads {threads} > {log:q} 2>&1"


rule ttt:
    input:
        unpack(ttt_inputs),
    output:
        "results/eval/ttt/{model}.csv",
    log:
        "results/logs/evaluate/ttt_{model}.log",
    benchmark:
        "results/benchmarks/rules/ttt_{model}.tsv"
    wildcard_constraints:
        model="|".join(TRAINED_MODELS),
    conda:
        "../../environment.yml"
    threads: job_threads("ttt")
    resources:
        **job_resources("ttt"),
    params:
        sens=sens_dir_flag,
        settings=ttt_settings(),
        batch_size=config["evaluation"]["ttt"]["batch_size"],
        test_slices=test_slices_flag(),
        seed=config["seed"],
        device=config["device"],
    shell:
        "python scripts/evaluate_ttt.py --model {input.model:q} --test @{input.test:q} {params.sens:q}"
        " --mask {input.mask:q} --settings {params.settings:q} --batch-size {params.batch_size:q}"
        " {params.test_slices:q} --seed {params.seed:q} --device {params.device:q}"
        " --out {output:q} --threads {threads} > {log:q} 2>&1"
