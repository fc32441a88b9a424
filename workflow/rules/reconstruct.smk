# Reconstructing your own fastMRI files: every .h5 in reconstruct.folder with each model of
# reconstruct.models, in fastMRI's submission layout (scripts/reconstruct.py). Not part of `all`:
# build it with `snakemake reconstructions`.


rule reconstructions:
    input:
        reconstruct_outputs,


rule reconstruct:
    input:
        unpack(reconstruct_inputs),
    output:
        out_dir=directory("results/reconstructions/{model}"),
    log:
        "results/logs/reconstruct/{model}.log",
    benchmark:
        "results/benchmarks/rules/reconstruct_{model}.tsv"
    wildcard_constraints:
        model="|".join(config["evaluation"]["models"]),
    conda:
        "../../environment.yml"
    threads: job_threads("reconstruct")
    resources:
        **job_resources("reconstruct"),
    params:
        maps_cache="resources/reconstruct_sens_maps",
        num_acs=config["fastmri"]["sens_maps"]["num_acs"],
        kernel_size=config["fastmri"]["sens_maps"]["kernel_size"],
        threshold=config["fastmri"]["sens_maps"]["threshold"],
        crop=config["fastmri"]["sens_maps"]["crop"],
        seed=SEEDS[0],
        device=config["device"],
    script:
        "../../scripts/reconstruct.py"
