# Evaluation: every model under every condition (clean, attacks, random noise, generator
# transfer, sampling-rate shift, unrolling shift, anatomy shift, small features), scored per test
# volume with fastMRI's metrics; and trained networks adapted by test-time training.


rule evaluate:
    input:
        unpack(evaluation_inputs),
    output:
        out="results/eval/seed{seed}/{model}.csv",
        recon_dir=directory("results/recons/seed{seed}/{model}"),
    log:
        "results/logs/evaluate/{model}_seed{seed}.log",
    benchmark:
        "results/benchmarks/rules/evaluate_{model}_seed{seed}.tsv"
    wildcard_constraints:
        model=r"[^/]+",
        seed=r"\d+",
    conda:
        "../../environment.yml"
    threads: job_threads("evaluate")
    resources:
        **job_resources("evaluate"),
    params:
        small_features=config["evaluation"]["small_features"],
        test_slices=config["evaluation"]["test_slices"],
        batch_size=config["evaluation"]["batch_size"],
        unrolls=config["evaluation"]["unrolls"],
        seed=seed_of,
        device=config["device"],
    script:
        "../../scripts/evaluate.py"


rule ttt:
    input:
        unpack(ttt_inputs),
    output:
        out="results/eval/seed{seed}/ttt/{model}.csv",
    log:
        "results/logs/evaluate/ttt_{model}_seed{seed}.log",
    benchmark:
        "results/benchmarks/rules/ttt_{model}_seed{seed}.tsv"
    wildcard_constraints:
        model="|".join(TRAINED_MODELS),
        seed=r"\d+",
    conda:
        "../../environment.yml"
    threads: job_threads("ttt")
    resources:
        **job_resources("ttt"),
    params:
        settings=plan.ttt_settings(config),
        batch_size=config["evaluation"]["ttt"]["batch_size"],
        test_slices=config["evaluation"]["test_slices"],
        seed=seed_of,
        device=config["device"],
    script:
        "../../scripts/evaluate_ttt.py"
