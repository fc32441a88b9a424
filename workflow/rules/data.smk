# Input data: the embedded synthetic dataset in fastMRI's HDF5 layout, or real fastMRI volumes;
# either way each split ends as a list of volumes, resources/splits/{split}_{anatomy}.txt.


rule synthetic_dataset:
    output:
        volume_files=synthetic_volumes(),
        sens_map_files=synthetic_sens_maps(),
    log:
        "results/logs/synthetic_dataset.log",
    benchmark:
        "results/benchmarks/rules/synthetic_dataset.tsv"
    conda:
        "../../environment.yml"
    threads: job_threads("synthetic_dataset")
    resources:
        **job_resources("synthetic_dataset"),
    params:
        root=synthetic_root,
        challenge=config["data"]["challenge"],
        anatomies=config["synthetic"]["anatomies"],
        volumes=config["synthetic"]["volumes"],
        slices=config["synthetic"]["slices_per_volume"],
        recon_size=config["synthetic"]["recon_size"],
        kspace_size=config["synthetic"]["kspace_size"],
        coils=config["synthetic"]["coils"],
        noise_level=config["synthetic"]["noise_level"],
        seed=config["synthetic"]["seed"],
    script:
        "../../scripts/make_synthetic.py"


# Real fastMRI: each dataset (an archive such as knee_multicoil_val) is downloaded from its signed
# URL, verified against the e-mailed SHA256 list and extracted; or, with fastmri.root, found on disk.
# Either way it is indexed (every volume validated) before any job reads it.


rule fetch_fastmri:
    input:
        sha256_file=fastmri_hash_file,
    output:
        marker=fastmri_marker(),
    log:
        "results/logs/fastmri/fetch_{dataset}.log",
    benchmark:
        "results/benchmarks/rules/fetch_fastmri_{dataset}.tsv"
    wildcard_constraints:
        dataset=FASTMRI_DATASET,
    conda:
        "../../environment.yml"
    threads: job_threads("fetch_fastmri")
    resources:
        **job_resources("fetch_fastmri"),
    params:
        url=fastmri_url,
        name="{dataset}",
        archive_dir=config["fastmri"]["archive_dir"],
        out_dir=output_folder,
        keep_archive=config["fastmri"]["keep_archives"],
        max_download_bytes=config["fastmri"]["limits"]["max_download_bytes"],
        max_members=config["fastmri"]["limits"]["max_members"],
        max_member_bytes=config["fastmri"]["limits"]["max_member_bytes"],
        max_expansion=config["fastmri"]["limits"]["max_expansion"],
    script:
        "../../scripts/fetch_fastmri.py"


rule index_fastmri:
    input:
        unpack(fastmri_index_inputs),
    output:
        out="resources/fastmri/index/{dataset}.csv",
    log:
        "results/logs/fastmri/index_{dataset}.log",
    benchmark:
        "results/benchmarks/rules/index_fastmri_{dataset}.tsv"
    wildcard_constraints:
        dataset=FASTMRI_DATASET,
    conda:
        "../../environment.yml"
    threads: job_threads("index_fastmri")
    resources:
        **job_resources("index_fastmri"),
    params:
        folder=lambda w: fastmri_folder(w.dataset),
        challenge=config["data"]["challenge"],
        volume_limits=plan.volume_limits(config),
    script:
        "../../scripts/index_fastmri.py"


rule split_list:
    input:
        unpack(lambda w: SOURCE["split_inputs"](w.split, w.anatomy)),
    output:
        out="resources/splits/{split}_{anatomy}.txt",
    log:
        "results/logs/splits/{split}_{anatomy}.log",
    benchmark:
        "results/benchmarks/rules/split_{split}_{anatomy}.tsv"
    wildcard_constraints:
        split="train|val|test",
        anatomy="knee|brain",
    conda:
        "../../environment.yml"
    threads: job_threads("split_list")
    resources:
        **job_resources("split_list"),
    params:
        start=lambda w: SOURCE["split_entry"](w.split, w.anatomy, "start"),
        num_volumes=lambda w: SOURCE["split_entry"](w.split, w.anatomy, "count"),
        anatomy=split_anatomy,
        volume_limits=plan.volume_limits(config),
    script:
        "../../scripts/make_split.py"


rule sens_maps:
    input:
        volumes="resources/splits/{split}_{anatomy}.txt",
    output:
        out_dir=directory("resources/fastmri/sens_maps/{split}_{anatomy}"),
    log:
        "results/logs/fastmri/sens_maps_{split}_{anatomy}.log",
    benchmark:
        "results/benchmarks/rules/sens_maps_{split}_{anatomy}.tsv"
    wildcard_constraints:
        split="train|val|test",
        anatomy="knee|brain",
    conda:
        "../../environment.yml"
    threads: job_threads("sens_maps")
    resources:
        **job_resources("sens_maps"),
    params:
        slices=lambda w: plan.split_slices(config, w.split),
        recon_size=recon_size(),
        num_acs=config["fastmri"]["sens_maps"]["num_acs"],
        kernel_size=config["fastmri"]["sens_maps"]["kernel_size"],
        threshold=config["fastmri"]["sens_maps"]["threshold"],
        crop=config["fastmri"]["sens_maps"]["crop"],
        device=config["device"],
    script:
        "../../scripts/estimate_sens_maps.py"
