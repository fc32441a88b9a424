# Tables and figures: the study's output, also collected by `snakemake --report`.


rule robustness_table:
    input:
        evaluation_csvs(),
    output:
        table=report(
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
        shift=report(
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
        config_hash=config_hash(),
        bootstrap=config["evaluation"]["bootstrap"],
        seed=config["seed"],
    shell:
        "python scripts/make_table.py --inputs {input:q} --config-hash {params.config_hash:q}"
        " --bootstrap {params.bootstrap:q} --seed {params.seed:q} --out {output.table:q}"
        " --markdown {output.markdown:q} --latex {output.latex:q} --shift-summary {output.shift:q}"
        " --threads {threads} > {log:q} 2>&1"


rule training_health:
    input:
        unpack(health_inputs),
    output:
        report(
            "results/tables/training_health.csv",
            caption="../report/training_health.rst",
            category="Tables",
        ),
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
        max_gap=config["health"]["max_gap_to_cs_tv_db"],
    shell:
        "python scripts/make_health_table.py --records {input.records:q} --scores {input.scores:q}"
        " --train-acceleration {params.train_acceleration:q} --max-gap-to-cs-tv {params.max_gap:q}"
        " --out {output:q} --threads {threads} > {log:q} 2>&1"


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
        attack=config["evaluation"]["figure"]["attack"],
        level=config["evaluation"]["figure"]["level"],
        recon_root=recon_root,
        out_dir=output_folder,
        train_acceleration=config["masks"]["acceleration"],
        train_unrolls=config["model"]["num_unrolls"],
    shell:
        "python scripts/make_figures.py --table {input.table:q} --recon-root {params.recon_root:q}"
        " --models {params.models:q} --grid-attack {params.attack:q} --grid-level {params.level:q}"
        " --attack-files {input.attacks:q} --out-dir {params.out_dir:q}"
        " --train-acceleration {params.train_acceleration:q} --train-unrolls {params.train_unrolls:q}"
        " --threads {threads} > {log:q} 2>&1"


rule html_tables:
    input:
        robustness="results/tables/robustness.csv",
        shift="results/tables/distribution_shift.csv",
        health="results/tables/training_health.csv",
    output:
        robustness=report(
            "results/tables/robustness.html",
            caption="../report/robustness_html.rst",
            category="Tables",
        ),
        shift=report(
            "results/tables/distribution_shift.html",
            caption="../report/distribution_shift_html.rst",
            category="Tables",
        ),
        health=report(
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
    shell:
        "python scripts/make_html_tables.py --robustness {input.robustness:q} --distribution-shift {input.shift:q}"
        " --training-health {input.health:q} --robustness-html {output.robustness:q}"
        " --distribution-shift-html {output.shift:q} --training-health-html {output.health:q} > {log:q} 2>&1"
