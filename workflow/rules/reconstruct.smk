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
        directory("results/reconstructions/{model}"),
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
        espirit=espirit_flags(),
        seed=config["seed"],
        device=config["device"],
    shell:
        "python scripts/reconstruct.py --model {input.model:q} --files {input.files:q} --mask {input.mask:q}"
        " --out-dir {output:q} --maps-cache resources/reconstruct_sens_maps {params.espirit:q}"
        " --seed {params.seed:q} --device {params.device:q} --threads {threads} > {log:q} 2>&1"
