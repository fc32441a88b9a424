# Undersampling masks: one per acceleration (training and evaluation), written once and shared by
# every model so all of them see the same measurements.


rule masks:
    output:
        masks=mask_files(),
        figure=report(
            "results/figures/masks.png",
            caption="../report/masks.rst",
            category="Data",
        ),
        figure_pdf="results/figures/masks.pdf",
    log:
        "results/logs/masks.log",
    benchmark:
        "results/benchmarks/rules/masks.tsv"
    conda:
        "../../environment.yml"
    threads: job_threads("masks")
    resources:
        **job_resources("masks"),
    params:
        mask_type=config["masks"]["type"],
        accelerations=plan.mask_accelerations(config),
        center_fractions=plan.mask_center_fractions(config),
        width=recon_size()[1],
        height=recon_size()[0],
        seed=config["masks"]["seed"],
        out_dir=output_folder,
    script:
        "../../scripts/make_masks.py"
