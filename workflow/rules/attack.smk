# Attack generation, separate from evaluation: each model's perturbations are written to
# results/attacks/ so they can be re-scored, inspected or transferred to another model.


rule attack:
    input:
        unpack(attack_inputs),
    output:
        "results/attacks/{model}/{attack}.h5",
    log:
        "results/logs/attack/{model}_{attack}.log",
    benchmark:
        "results/benchmarks/rules/attack_{model}_{attack}.tsv"
    wildcard_constraints:
        attack="pgd_[a-z0-9_]+",
    conda:
        "../../environment.yml"
    threads: job_threads("attack")
    resources:
        **job_resources("attack"),
    params:
        settings=attack_settings,
        sens=sens_dir_flag,
        test_slices=test_slices_flag(),
        batch_size=config["evaluation"]["batch_size"],
        seed=config["seed"],
        device=config["device"],
    shell:
        "python scripts/attack.py --attack {wildcards.attack:q} {params.settings:q} --model {input.model:q}"
        " --test @{input.test:q} --mask {input.mask:q} {params.sens:q} {params.test_slices:q}"
        " --batch-size {params.batch_size:q} --seed {params.seed:q} --device {params.device:q}"
        " --out {output:q} --threads {threads} > {log:q} 2>&1"


rule noise:
    input:
        **test_inputs(),
    output:
        "results/attacks/noise/{attack}.h5",
    log:
        "results/logs/attack/noise_{attack}.log",
    benchmark:
        "results/benchmarks/rules/noise_{attack}.tsv"
    wildcard_constraints:
        attack="noise_[a-z0-9_]+",
    conda:
        "../../environment.yml"
    threads: job_threads("noise")
    resources:
        **job_resources("noise"),
    params:
        eps=noise_eps,
        sens=sens_dir_flag,
        test_slices=test_slices_flag(),
        batch_size=config["evaluation"]["batch_size"],
        seed=config["seed"],
    shell:
        "python scripts/attack.py --attack {wildcards.attack:q} --eps {params.eps:q}"
        " --test @{input.test:q} --mask {input.mask:q} {params.sens:q} {params.test_slices:q}"
        " --batch-size {params.batch_size:q} --seed {params.seed:q} --device cpu"
        " --out {output:q} --threads {threads} > {log:q} 2>&1"
