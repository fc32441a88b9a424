# Tables and figures: the study's output, also collected by `snakemake --report`.


rule robustness_table:
    input:
        inputs=evaluation_csvs(),
    output:
        out=report(
            "results/tables/robustness.csv",
            caption="../report/robustness_table.rst",
            category="Tables",
        ),
        markdown=report(
            "results/tables/robustness.md",
            caption="../report/robustness_wide.rst",
            category="Tables",
        ),
        latex="results/tables/robustness.tex",
        by_seed="results/tables/robustness_by_seed.csv",
        scores="results/tables/scores.csv",
        shift_summary=report(
            "results/tables/distribution_shift.csv",
            caption="../report/distribution_shift_table.rst",
            category="Tables",
        ),
    log:
        "results/logs/robustness_table.log",
    benchmark:
        "results/benchmarks/rules/robustness_table.tsv"
    conda:
        "../../environment.yml"
    threads: job_threads("robustness_table")
    resources:
        **job_resources("robustness_table"),
    params:
        config_hash=plan.config_hash(config),
    script:
        "../../scripts/make_table.py"


rule claims:
    input:
        scores="results/tables/scores.csv",
    output:
        out=report(
            "results/tables/claims.csv",
            caption="../report/claims_table.rst",
            category="Claims",
        ),
        html=report(
            "results/tables/claims.html",
            caption="../report/claims_html.rst",
            category="Claims",
        ),
        figure=report(
            "results/figures/claims.png",
            caption="../report/claims_figure.rst",
            category="Claims",
        ),
        comparisons=report(
            "results/tables/comparisons.csv",
            caption="../report/comparisons.rst",
            category="Claims",
        ),
        markdown="results/tables/claims.md",
    log:
        "results/logs/claims.log",
    benchmark:
        "results/benchmarks/rules/claims.tsv"
    conda:
        "../../environment.yml"
    threads: job_threads("claims")
    resources:
        **job_resources("claims"),
    params:
        claims=config["claims"],
    script:
        "../../scripts/make_claims.py"


rule training_health:
    input:
        unpack(health_inputs),
    output:
        out=report(
            "results/tables/training_health.csv",
            caption="../report/training_health.rst",
            category="Tables",
        ),
        by_seed="results/tables/training_health_by_seed.csv",
    log:
        "results/logs/training_health.log",
    benchmark:
        "results/benchmarks/rules/training_health.tsv"
    conda:
        "../../environment.yml"
    threads: job_threads("training_health")
    resources:
        **job_resources("training_health"),
    params:
        train_acceleration=config["masks"]["acceleration"],
        max_gap_to_cs_tv=config["health"]["max_gap_to_cs_tv_db"],
        max_seed_gap=config["health"]["max_seed_gap_db"],
    script:
        "../../scripts/make_health_table.py"


rule figures:
    input:
        unpack(figure_inputs),
    output:
        curves=report(
            "results/figures/robustness_curves.png",
            caption="../report/robustness_curves.rst",
            category="Adversarial robustness",
        ),
        acceleration=report(
            "results/figures/acceleration_shift.png",
            caption="../report/acceleration_shift.rst",
            category="Distribution shift",
        ),
        unrolls=report(
            "results/figures/unroll_shift.png",
            caption="../report/unroll_shift.rst",
            category="Distribution shift",
        ),
        grid=report(
            "results/figures/image_grid.png",
            caption="../report/image_grid.rst",
            category="Adversarial robustness",
        ),
        perturbations=report(
            "results/figures/perturbations.png",
            caption="../report/perturbations.rst",
            category="Adversarial robustness",
        ),
        anatomy=report(
            "results/figures/anatomy_shift.png",
            caption="../report/anatomy_shift.rst",
            category="Distribution shift",
        ),
        features=report(
            "results/figures/small_features.png",
            caption="../report/small_features.rst",
            category="Small features",
        ),
        pdfs=expand("results/figures/{figure}.pdf", figure=FIGURES),
    log:
        "results/logs/figures.log",
    benchmark:
        "results/benchmarks/rules/figures.tsv"
    conda:
        "../../environment.yml"
    threads: job_threads("figures")
    resources:
        **job_resources("figures"),
    params:
        models=config["evaluation"]["figure"]["models"],
        grid_attack=config["evaluation"]["figure"]["attack"],
        grid_level=config["evaluation"]["figure"]["level"],
        recon_root=recon_root,
        out_dir=output_folder,
        train_acceleration=config["masks"]["acceleration"],
        train_unrolls=config["model"]["num_unrolls"],
    script:
        "../../scripts/make_figures.py"


rule html_tables:
    input:
        robustness="results/tables/robustness.csv",
        distribution_shift="results/tables/distribution_shift.csv",
        training_health="results/tables/training_health.csv",
    output:
        robustness_html=report(
            "results/tables/robustness.html",
            caption="../report/robustness_html.rst",
            category="Tables",
        ),
        distribution_shift_html=report(
            "results/tables/distribution_shift.html",
            caption="../report/distribution_shift_html.rst",
            category="Tables",
        ),
        training_health_html=report(
            "results/tables/training_health.html",
            caption="../report/training_health_html.rst",
            category="Tables",
        ),
    log:
        "results/logs/html_tables.log",
    benchmark:
        "results/benchmarks/rules/html_tables.tsv"
    conda:
        "../../environment.yml"
    threads: job_threads("html_tables")
    resources:
        **job_resources("html_tables"),
    script:
        "../../scripts/make_html_tables.py"
