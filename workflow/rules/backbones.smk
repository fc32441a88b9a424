# The journal version's backbones (target `backbones`, not part of `all`): every method of
# backbones.methods on MoDL, E2E-VarNet and ISTA-Net+ (smug.study.ablations.backbone_models),
# trained by rule train, attacked by rule attack, scored clean and under backbones.attacks,
# health-checked, tabulated, drawn and held against the claims of source_table: backbones.


use rule evaluate as backbone_evaluate with:
    input:
        unpack(backbone_evaluation_inputs),
    output:
        out="results/backbones/eval/seed{seed}/{model}.csv",
        recon_dir=directory("results/backbones/recons/seed{seed}/{model}"),
    log:
        "results/logs/backbones/evaluate_{model}_seed{seed}.log",
    benchmark:
        "results/benchmarks/rules/backbone_evaluate_{model}_seed{seed}.tsv"
    params:
        small_features=None,
        unrolls=None,


use rule training_health as backbone_health with:
    input:
        records=model_files(BACKBONE_MODELS),
        scores=backbone_scores([*BACKBONE_MODELS, *plan.HEALTH_REFERENCES]),
    output:
        out=report(
            "results/tables/backbone_health.csv",
            caption="../report/backbone_health.rst",
            category="Backbones",
        ),
        by_seed="results/tables/backbone_health_by_seed.csv",
    log:
        "results/logs/backbones/health.log",
    benchmark:
        "results/benchmarks/rules/backbone_health.tsv"


use rule ablation_table as backbone_table with:
    input:
        scores=backbone_scores(),
        diagnostics=[],
        health="results/tables/backbone_health.csv",
    output:
        out=report(
            "results/tables/backbones.csv",
            caption="../report/backbones_table.rst",
            category="Backbones",
        ),
    log:
        "results/logs/backbones/table.log",
    benchmark:
        "results/benchmarks/rules/backbone_table.tsv"
    params:
        experiments=plan.backbone_experiment(backbone_models(config)),
        config_hash=plan.config_hash(config),


use rule ablation_figure as backbone_figure with:
    input:
        table="results/tables/backbones.csv",
    output:
        png=report(
            "results/figures/backbones.png",
            caption="../report/backbones_figure.rst",
            category="Backbones",
        ),
        pdf="results/figures/backbones.pdf",
    log:
        "results/logs/backbones/figure.log",
    benchmark:
        "results/benchmarks/rules/backbone_figure.tsv"
    params:
        experiment="backbones",
        kind="backbones",


use rule claims as backbone_claims with:
    input:
        scores=backbone_scores(),
        backbone_scores=backbone_scores(),
    output:
        out=report(
            "results/tables/backbone_claims.csv",
            caption="../report/claims_table.rst",
            category="Backbones",
        ),
        html="results/tables/backbone_claims.html",
        figure=report(
            "results/figures/backbone_claims.png",
            caption="../report/claims_figure.rst",
            category="Backbones",
        ),
        comparisons="results/tables/backbone_comparisons.csv",
        markdown="results/tables/backbone_claims.md",
    log:
        "results/logs/backbones/claims.log",
    benchmark:
        "results/benchmarks/rules/backbone_claims.tsv"
    params:
        claims=backbone_claims,


rule backbones:
    input:
        "results/tables/backbone_claims.csv",
        "results/tables/backbones.csv",
        "results/tables/backbone_health.csv",
        "results/figures/backbones.png",
