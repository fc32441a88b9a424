# The SMUG paper's open questions as experiments (target `ablations`, not part of `all`): each
# experiment's variants are trained by rule train (smug.study.ablations), attacked by rule attack, then
# scored clean and under ablations.attacks, health-checked and, where asked, diagnosed.


use rule evaluate as ablation_evaluate with:
    input:
        unpack(ablation_evaluation_inputs),
    output:
        out="results/ablations/eval/seed{seed}/{model}.csv",
        recon_dir=directory("results/ablations/recons/seed{seed}/{model}"),
    log:
        "results/logs/ablations/evaluate_{model}_seed{seed}.log",
    benchmark:
        "results/benchmarks/rules/ablation_evaluate_{model}_seed{seed}.tsv"
    params:
        small_features=None,
        unrolls=None,


rule diagnose:
    input:
        unpack(model_test_inputs),
    output:
        out="results/ablations/diagnostics/seed{seed}/{model}.csv",
    log:
        "results/logs/ablations/diagnose_{model}_seed{seed}.log",
    benchmark:
        "results/benchmarks/rules/diagnose_{model}_seed{seed}.tsv"
    wildcard_constraints:
        seed=r"\d+",
    conda:
        "../../environment.yml"
    threads: job_threads("diagnose")
    resources:
        **job_resources("diagnose"),
    params:
        radii=config["ablations"]["diagnostics"]["radii"],
        steps=config["ablations"]["diagnostics"]["steps"],
        test_slices=config["evaluation"]["test_slices"],
        batch_size=config["evaluation"]["batch_size"],
        seed=seed_of,
        device=config["device"],
    script:
        "../../scripts/diagnose.py"


use rule training_health as ablation_health with:
    input:
        unpack(ablation_health_inputs),
    output:
        out=report(
            "results/tables/ablation_health.csv",
            caption="../report/ablation_health.rst",
            category="Ablations",
        ),
        by_seed="results/tables/ablation_health_by_seed.csv",
    log:
        "results/logs/ablations/health.log",
    benchmark:
        "results/benchmarks/rules/ablation_health.tsv"


rule ablation_table:
    input:
        unpack(ablation_table_inputs),
    output:
        out=report(
            "results/tables/ablations.csv",
            caption="../report/ablations_table.rst",
            category="Ablations",
        ),
    log:
        "results/logs/ablations/table.log",
    benchmark:
        "results/benchmarks/rules/ablation_table.tsv"
    conda:
        "../../environment.yml"
    threads: job_threads("ablation_table")
    resources:
        **job_resources("ablation_table"),
    params:
        experiments=plan.ablation_experiments(config, ABLATION_EXPERIMENTS),
        config_hash=plan.config_hash(config),
    script:
        "../../scripts/make_ablation_table.py"


rule ablation_figure:
    input:
        table="results/tables/ablations.csv",
    output:
        png=report(
            "results/figures/ablations/{experiment}.png",
            caption="../report/ablation_figure.rst",
            category="Ablations",
        ),
        pdf="results/figures/ablations/{experiment}.pdf",
    log:
        "results/logs/ablations/figure_{experiment}.log",
    benchmark:
        "results/benchmarks/rules/ablation_figure_{experiment}.tsv"
    wildcard_constraints:
        experiment="|".join(config["ablations"]["experiments"]),
    conda:
        "../../environment.yml"
    threads: job_threads("ablation_figure")
    resources:
        **job_resources("ablation_figure"),
    params:
        experiment="{experiment}",
        kind=lambda w: config["ablations"]["experiments"][w.experiment]["figure"],
    script:
        "../../scripts/make_ablation_figure.py"


# The claims on the ablations (source_table: ablations), on their models' scores alone, so that
# `snakemake ablations` does not need the main tables.
use rule claims as ablation_claims with:
    input:
        scores=ablation_scores(),
        ablation_scores=ablation_scores(),
    output:
        out=report(
            "results/tables/ablation_claims.csv",
            caption="../report/claims_table.rst",
            category="Ablations",
        ),
        html="results/tables/ablation_claims.html",
        figure=report(
            "results/figures/ablations/claims.png",
            caption="../report/claims_figure.rst",
            category="Ablations",
        ),
        comparisons="results/tables/ablation_comparisons.csv",
        markdown="results/tables/ablation_claims.md",
    log:
        "results/logs/ablations/claims.log",
    benchmark:
        "results/benchmarks/rules/ablation_claims.tsv"
    params:
        claims=ablation_claims,


rule ablations:
    input:
        "results/tables/ablation_claims.csv",
        "results/tables/ablations.csv",
        "results/tables/ablation_health.csv",
        expand(
            "results/figures/ablations/{experiment}.png", experiment=list(config["ablations"]["experiments"])
        ),
