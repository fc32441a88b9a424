# Helpers shared by every stage: each path the DAG needs is derived here from the config,
# so the rules themselves only name inputs and outputs.
#
# Shell safety: every value a rule's shell command interpolates is quoted with Snakemake's `:q`,
# so a config string (a path with a space, say) always reaches the script as one argument and is
# never read by the shell. The helpers below that give optional `--flag value ...` pieces therefore
# return lists of argument words (empty when the flag is absent), which `{params.x:q}` quotes word
# by word; JSON payloads are one word each.
import hashlib
import json
from pathlib import Path

from smug.methods import FIGURES, NOISE_COUNTERPART, PROTOCOLS, spec_settings, trained_methods
from smug.synthetic import sens_map_path, volume_paths, volume_plan


def synthetic_plan():
    syn = config["synthetic"]
    return volume_plan(syn["seed"], syn["volumes"], syn["anatomies"])


def synthetic_volumes():
    """Every fastMRI-format HDF5 file of the synthetic dataset (none when the data are fastMRI's)."""
    if config["data"]["source"] != "synthetic":
        return []
    return [
        str(p) for p in volume_paths(config["data"]["root"], config["data"]["challenge"], synthetic_plan())
    ]


def synthetic_sens_maps():
    """The true coil sensitivities written beside multicoil synthetic volumes (none for singlecoil)."""
    if config["data"]["source"] != "synthetic" or config["data"]["challenge"] != "multicoil":
        return []
    return [str(sens_map_path(config["data"]["root"], spec.fname)) for spec in synthetic_plan()]


def mask_accelerations():
    """The training acceleration and every acceleration a model is evaluated at, sorted."""
    m = config["masks"]
    return sorted({m["acceleration"], *m["eval_accelerations"]})


def mask_center_fractions():
    """Centre fractions paired with mask_accelerations(): the number of fully sampled centre lines
    scales as 1/acceleration, as fastMRI pairs 4x with 8% and 8x with 4%."""
    m = config["masks"]
    return [m["center_fraction"] * m["acceleration"] / acc for acc in mask_accelerations()]


def mask_files():
    return expand("resources/masks/{acc}x.npz", acc=mask_accelerations())


def training_mask():
    """The mask of the training acceleration, which every model is trained and tested with."""
    return expand("resources/masks/{acc}x.npz", acc=config["masks"]["acceleration"])[0]


def final_outputs():
    """What `snakemake` with no target builds."""
    return [
        *synthetic_volumes(),
        *mask_files(),
        "results/figures/masks.png",
        "results/tables/robustness.csv",
        "results/tables/training_health.csv",
        *expand("results/tables/{table}.html", table=("robustness", "distribution_shift", "training_health")),
        *expand("results/figures/{figure}.png", figure=FIGURES),
    ]


# ---- data splits ------------------------------------------------------------------------------
# Every split (train/val/test of one anatomy) is a list file, resources/splits/{split}_{anatomy}.txt,
# that the scripts read as @LIST: from the synthetic volumes, or from the index of a fastMRI folder
# (downloaded and verified, or already on disk under fastmri.root).

# fastMRI dataset names, as the archives are called: knee_singlecoil_train, brain_multicoil_val, ...
FASTMRI_DATASET = "(knee|brain)_(singlecoil|multicoil)_[a-z0-9_]+"


def split_volumes(split, anatomy):
    """Synthetic volumes of one split and anatomy family, as declared outputs of synthetic_dataset."""
    root, challenge = config["data"]["root"], config["data"]["challenge"]
    plan = [spec for spec in synthetic_plan() if spec.split == split and spec.anatomy == anatomy]
    return [str(p) for p in volume_paths(root, challenge, plan)]


def split_list(split, anatomy):
    return f"resources/splits/{split}_{anatomy}.txt"


def fastmri_split(split, anatomy):
    """The fastmri.splits entry of a split: datasets (a list), start and count."""
    entry = config["fastmri"]["splits"][split].get(anatomy)
    if entry is None:
        raise ValueError(
            f"fastmri.splits.{split} has no entry for anatomy {anatomy!r}; add one "
            f"(e.g. {{dataset: {anatomy}_{config['data']['challenge']}_val, start: 0, count: 10}})"
        )
    entry = {"start": 0, "count": None, **entry}
    if isinstance(entry["dataset"], str):
        entry["dataset"] = [entry["dataset"]]
    return entry


def used_splits():
    """(split, anatomy) of every split list the run reads."""
    train = config["data"]["train_anatomy"]
    pairs = [("train", train), ("val", train), ("test", train)]
    if config["data"]["shift_anatomy"]:
        pairs.append(("test", config["data"]["shift_anatomy"]))
    return pairs


def check_fastmri_splits():
    """The splits a run reads must not share volumes where they draw from the same datasets."""
    used = {}
    for split, anatomy in used_splits():
        entry = fastmri_split(split, anatomy)
        key = (tuple(entry["dataset"]), anatomy)
        stop = float("inf") if entry["count"] is None else entry["start"] + entry["count"]
        for other, (start, other_stop) in used.get(key, {}).items():
            if entry["start"] < other_stop and start < stop:
                raise ValueError(
                    f"fastmri.splits.{split}.{anatomy} and fastmri.splits.{other}.{anatomy} overlap "
                    f"in {', '.join(entry['dataset'])}: give them disjoint start/count ranges"
                )
        used.setdefault(key, {})[split] = (entry["start"], stop)


def fastmri_folder(dataset):
    """Where a fastMRI dataset's volumes are: under fastmri.root if given, else where it is downloaded."""
    root = config["fastmri"]["root"]
    return str(Path(root or config["fastmri"]["download_dir"]) / dataset)


def fastmri_marker():
    """Written last by scripts/fetch_fastmri.py: the dataset is downloaded, verified and extracted."""
    return str(Path(config["fastmri"]["download_dir"]) / "{dataset}" / ".complete")


def fastmri_url(wildcards):
    urls = config["fastmri"]["urls"]
    if wildcards.dataset not in urls:
        raise ValueError(
            f"fastmri.urls has no signed URL for {wildcards.dataset!r}: add the link from the fastMRI "
            "e-mail, or set fastmri.root to a folder that already holds the data"
        )
    return urls[wildcards.dataset]


def fastmri_hash_file(wildcards):
    path = config["fastmri"]["sha256_file"]
    if path is None:
        raise ValueError(
            "fastmri.sha256_file is not set: give the SHA256 list e-mailed with the fastMRI links"
        )
    return path


def keep_archive_flag():
    return ["--keep-archive" if config["fastmri"]["keep_archives"] else "--delete-archive"]


def fastmri_index_inputs(wildcards):
    """Nothing when the data are already on disk (fastmri.root), else the completed download."""
    if config["fastmri"]["root"]:
        return {}
    return {"marker": fastmri_marker().format(dataset=wildcards.dataset)}


def fastmri_index_folder(wildcards):
    return fastmri_folder(wildcards.dataset)


def split_list_inputs(wildcards):
    if config["data"]["source"] == "synthetic":
        return {"volumes": split_volumes(wildcards.split, wildcards.anatomy)}
    check_fastmri_splits()
    datasets = fastmri_split(wildcards.split, wildcards.anatomy)["dataset"]
    return {"index": expand("resources/fastmri/index/{dataset}.csv", dataset=datasets)}


def split_selection(wildcards, input):
    """make_split.py's source (argument words): the synthetic volumes as they are, or a range of a
    fastMRI index."""
    if config["data"]["source"] == "synthetic":
        return ["--volumes", *input.volumes, *volume_limits_flag()]
    entry = fastmri_split(wildcards.split, wildcards.anatomy)
    count = [] if entry["count"] is None else ["--count", str(entry["count"])]
    return ["--index", *input.index, "--start", str(entry["start"]), *count, "--anatomy", wildcards.anatomy]


def volume_limits_flag():
    """``--volume-limits SLICES COILS HEIGHT WIDTH`` from data.volume_limits."""
    limits = config["data"]["volume_limits"]
    keys = ("max_slices", "max_coils", "max_height", "max_width")
    return ["--volume-limits", *(str(limits[key]) for key in keys)]


def split_slices(split):
    """Slices each consumer of a split uses; sensitivity maps are estimated for the largest count,
    whose central-slice selection contains every smaller one (smug.data.select_slices)."""
    counts = {
        "train": [config["training"]["train_slices"]],
        "val": [config["training"]["val_slices"], config["classical"]["val_slices"]],
        "test": [config["evaluation"]["test_slices"]],
    }[split]
    return None if None in counts else max(counts)


def sens_maps_slices(wildcards):
    slices = split_slices(wildcards.split)
    return [] if slices is None else ["--slices", str(slices)]


def split_sens_maps(split, anatomy):
    """Sensitivity maps a multicoil split needs: the true maps of synthetic volumes, or the folder
    of maps estimated from the fastMRI k-space; nothing for single-coil data."""
    if config["data"]["challenge"] != "multicoil":
        return []
    if config["data"]["source"] == "fastmri":
        return [f"resources/fastmri/sens_maps/{split}_{anatomy}"]
    plan = [spec for spec in synthetic_plan() if spec.split == split and spec.anatomy == anatomy]
    return [str(sens_map_path(config["data"]["root"], spec.fname)) for spec in plan]


def sens_dir_flag(wildcards, input):
    """``--sens-dir DIR ...`` for the rule's sensitivity-map inputs (files or folders), or nothing."""
    if not input.sens:
        return []
    if config["data"]["source"] == "fastmri":
        folders = list(input.sens)
    else:
        folders = [str(Path(p).parent) for p in input.sens]
    return ["--sens-dir", *dict.fromkeys(folders)]


def recon_size():
    """(h, w) every slice is cropped to; the masks' width."""
    source = config["data"]["source"]
    return config["synthetic" if source == "synthetic" else "fastmri"]["recon_size"]


# ---- training ---------------------------------------------------------------------------------

# Every trained model, its kind and the model it starts from: smug.methods.METHODS.
TRAINED_MODELS = trained_methods()


def training_inputs(wildcards):
    anatomy = config["data"]["train_anatomy"]
    inputs = {
        "train": split_list("train", anatomy),
        "val": split_list("val", anatomy),
        "sens": split_sens_maps("train", anatomy) + split_sens_maps("val", anatomy),
        "mask": training_mask(),
    }
    parent = TRAINED_MODELS[wildcards.model].init
    if parent is not None:
        inputs["init"] = f"results/models/{parent}/model.pt"
    return inputs


def init_flag(wildcards, input):
    return ["--init", input.init] if TRAINED_MODELS[wildcards.model].init else []


def training_spec(wildcards):
    """The JSON spec scripts/train.py receives: exactly the settings that determine the model's
    weights (smug.methods.spec_settings), so a setting change retrains only the models reading it."""
    name = wildcards.model
    spec = {
        "name": name,
        "kind": TRAINED_MODELS[name].kind,
        "seed": config["seed"],
        **spec_settings(name, config),
        "data": {
            "challenge": config["data"]["challenge"],
            "train_slices": config["training"]["train_slices"],
            "val_slices": config["training"]["val_slices"],
        },
    }
    return json.dumps(spec, sort_keys=True)


# ---- methods that are not trained by scripts/train.py ----------------------------------------


def classical_inputs(wildcards):
    anatomy = config["data"]["train_anatomy"]
    return {
        "val": split_list("val", anatomy),
        "sens": split_sens_maps("val", anatomy),
        "mask": training_mask(),
    }


def untrained_settings():
    keys = ("num_iters", "lr", "channels", "num_layers", "holdout_fraction", "patience")
    return json.dumps({k: config["untrained"][k] for k in keys}, sort_keys=True)


# ---- attacks and evaluation --------------------------------------------------------------------


def test_inputs():
    """Test volumes (training anatomy), their sensitivity maps and the training-acceleration mask."""
    anatomy = config["data"]["train_anatomy"]
    return {
        "test": split_list("test", anatomy),
        "sens": split_sens_maps("test", anatomy),
        "mask": training_mask(),
    }


def test_slices_flag():
    slices = config["evaluation"]["test_slices"]
    return [] if slices is None else ["--test-slices", str(slices)]


def attack_inputs(wildcards):
    return {**test_inputs(), "model": f"results/models/{wildcards.model}/model.pt"}


def attack_settings(wildcards):
    """Command-line settings (argument words) of one white-box attack (eps grid, loss target, PGD
    options); a paper protocol (smug.attacks.PROTOCOLS) fixes its own PGD settings and takes only
    its eps grid."""
    attack = config["evaluation"]["attacks"][wildcards.attack]
    flags = ["--eps", *map(str, attack["eps"])]
    if wildcards.attack in PROTOCOLS:
        return flags
    pgd = config["evaluation"]["pgd"]
    flags += [
        "--steps",
        str(pgd["steps"]),
        "--loss-target",
        attack.get("loss_target", pgd["loss_target"]),
        "--eot-samples",
        str(pgd["eot_samples"]),
    ]
    if pgd["step_factor"] is not None:
        flags += ["--step-factor", str(pgd["step_factor"])]
    if not pgd["random_start"]:
        flags.append("--no-random-start")
    return flags


def noise_eps(wildcards):
    """Random noise covers the eps grids of every attack with the same norm ball (one word each)."""
    grids = [
        entry["eps"]
        for name, entry in config["evaluation"]["attacks"].items()
        if NOISE_COUNTERPART[name] == wildcards.attack
    ]
    return [str(eps) for eps in sorted({eps for grid in grids for eps in grid})]


def model_attacks(model):
    """The configured attacks a model is evaluated under (an attack may name the models it is for)."""
    return [
        name
        for name, entry in config["evaluation"]["attacks"].items()
        if entry.get("models") is None or model in entry["models"]
    ]


def attack_files(model):
    """Perturbations a model is evaluated under: its own white-box attacks and random noise of the
    same norms, or, for the untrained network (no gradient), attacks transferred from another model."""
    if model == "untrained":
        source = config["untrained"]["attack_source"]
        return [f"results/attacks/{source}/{a}.h5" for a in config["untrained"]["attacks"]]
    attacks = model_attacks(model)
    noise = dict.fromkeys(NOISE_COUNTERPART[a] for a in attacks)
    return [f"results/attacks/{model}/{a}.h5" for a in attacks] + [
        f"results/attacks/noise/{n}.h5" for n in noise
    ]


def shift_anatomy():
    """The anatomy of the distribution-shift test, or None when it is switched off."""
    shift = config["data"]["shift_anatomy"]
    if shift == config["data"]["train_anatomy"]:
        raise ValueError(f"data.shift_anatomy must differ from data.train_anatomy ({shift!r}), or be null")
    return shift


def evaluation_inputs(wildcards):
    generators = [] if wildcards.model == "untrained" else config["evaluation"]["generators"]
    inputs = {
        **test_inputs(),
        "model": f"results/models/{wildcards.model}/model.pt",
        "masks": mask_files(),
        "attacks": attack_files(wildcards.model),
        "generators": [f"results/models/{g}/model.pt" for g in generators],
        "shift": [],
    }
    if shift_anatomy():
        inputs["shift"] = split_list("test", shift_anatomy())
        inputs["sens"] = inputs["sens"] + split_sens_maps("test", shift_anatomy())
    return inputs


def shift_flag(wildcards, input):
    return ["--shift-test", f"@{input.shift}"] if input.shift else []


def small_features_flag():
    features = config["evaluation"]["small_features"]
    return [] if features is None else ["--small-features", json.dumps(features, sort_keys=True)]


def ttt_models():
    """Trained networks adapted by test-time training (none without an anatomy shift)."""
    if not shift_anatomy():
        return []
    return [m for m in config["evaluation"]["ttt"]["models"] if m in config["evaluation"]["models"]]


def ttt_inputs(wildcards):
    anatomy = shift_anatomy()
    return {
        "model": f"results/models/{wildcards.model}/model.pt",
        "test": split_list("test", anatomy),
        "sens": split_sens_maps("test", anatomy),
        "mask": training_mask(),
    }


def ttt_settings():
    keys = ("steps", "lr", "holdout_fraction", "patience")
    return json.dumps({k: config["evaluation"]["ttt"][k] for k in keys}, sort_keys=True)


def evaluation_csvs():
    return [
        *expand("results/eval/{model}.csv", model=config["evaluation"]["models"]),
        *expand("results/eval/ttt/{model}.csv", model=ttt_models()),
    ]


def pretrained_ancestors(model):
    """Trained models a model is initialised from, nearest first (RS-E2E: MoDL, then the denoiser)."""
    chain = []
    parent = TRAINED_MODELS[model].init if model in TRAINED_MODELS else None
    while parent is not None:
        chain.append(parent)
        parent = TRAINED_MODELS[parent].init
    return chain


def health_models():
    """Every evaluated method and the pre-trained models they start from (the denoiser)."""
    models = list(config["evaluation"]["models"])
    for model in config["evaluation"]["models"]:
        models += [m for m in pretrained_ancestors(model) if m not in models]
    return models


def health_inputs(wildcards):
    return {
        "records": expand("results/models/{model}/model.pt", model=health_models()),
        "scores": expand("results/eval/{model}.csv", model=config["evaluation"]["models"]),
    }


def warn_unhealthy_models(path):
    """One line per unhealthy model of a finished run's health table (the run itself succeeds)."""
    import csv

    if not Path(path).exists():
        return
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            if row["healthy"] != "True":
                print(f"WARNING: model {row['model']} is not healthy: {row['failed_checks']} (see {path})")


def config_hash():
    """Identifies the configuration in every row of the robustness table."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:12]


def figure_inputs(wildcards):
    fig = config["evaluation"]["figure"]
    shown = [m for m in ("modl", "smug") if m in config["evaluation"]["models"]]
    return {
        "table": "results/tables/robustness.csv",
        "recons": expand("results/recons/{model}", model=fig["models"]),
        "attacks": [f"results/attacks/{m}/{fig['attack']}.h5" for m in shown],
    }


def check_config_references():
    """Config lists that name entries of another list must name existing ones: a misspelt or
    unevaluated model in evaluation.figure.models would otherwise leave a finished folder's figures
    stale. The schema checks each name's spelling; this checks what it refers to, when the DAG is
    built, with one message naming the entry, its key and the valid names."""
    evaluation = config["evaluation"]
    models, attacks = evaluation["models"], list(evaluation["attacks"])
    references = {
        "evaluation.figure.models": (evaluation["figure"]["models"], "evaluation.models", models),
        "evaluation.figure.attack": ([evaluation["figure"]["attack"]], "evaluation.attacks", attacks),
    }
    if "untrained" in models:
        references["untrained.attacks"] = (config["untrained"]["attacks"], "evaluation.attacks", attacks)
    for key, (names, target, valid) in references.items():
        for name in names:
            if name not in valid:
                raise ValueError(
                    f"config error: {key}: {name!r} is not in {target} (valid: {', '.join(valid)})"
                )


# ---- reconstructing a user's own files (target `reconstructions`) ------------------------------


def reconstruct_files():
    """The fastMRI volumes in reconstruct.folder, sorted."""
    folder = config["reconstruct"]["folder"]
    if folder is None:
        raise ValueError(
            "config error: reconstruct.folder is null; set it to a folder of fastMRI .h5 files to reconstruct"
        )
    files = sorted(str(path) for path in Path(folder).glob("*.h5"))
    if not files:
        raise ValueError(f"config error: reconstruct.folder: {folder} holds no .h5 files")
    return files


def reconstruct_inputs(wildcards):
    return {
        "model": f"results/models/{wildcards.model}/model.pt",
        "mask": training_mask(),
        "files": reconstruct_files(),
    }


def reconstruct_outputs(wildcards):
    reconstruct_files()  # a missing or empty folder stops here, named
    return expand("results/reconstructions/{model}", model=config["reconstruct"]["models"])


def espirit_flags():
    """scripts/reconstruct.py's ESPIRiT settings: fastmri.sens_maps, as for the splits' maps."""
    maps = config["fastmri"]["sens_maps"]
    flags = []
    for key in ("num_acs", "kernel_size", "threshold", "crop"):
        flags += [f"--{key.replace('_', '-')}", str(maps[key])]
    return flags


# ---- parameters derived from a rule's own files (so no path prefix is hard-coded twice) ------


def output_folder(wildcards, output):
    """Folder of a rule's first output."""
    return str(Path(output[0]).parent)


def synthetic_root(wildcards, output):
    """Dataset root above the {challenge}_{split}/ folders of the volumes."""
    return str(Path(output.volumes[0]).parents[1])


def rule_benchmark_folder(wildcards, output):
    """Where every rule's `benchmark:` file lies, beside the benchmark summary's outputs."""
    return str(Path(output[0]).parent / "rules")


def recon_root(wildcards, input):
    """Folder holding every model's reconstruction folder."""
    return str(Path(input.recons[0]).parent)


def performance_flags():
    """scripts/bench.py's switches for the training section's speed options that are on."""
    switches = ("channels_last", "cudnn_benchmark", "pin_memory")
    return [f"--{key.replace('_', '-')}" for key in switches if config["training"][key]]


# ---- job resources: threads locally, sbatch options under the slurm profile -------------------


def job_spec(rule_name):
    """cluster.resources.default overlaid by the rule's own entry: runtime, mem_mb, cpus, gpu."""
    table = config["cluster"]["resources"]
    return {**table["default"], **table.get(rule_name, {})}


def job_threads(rule_name):
    """A rule's threads are its cpus, so the local scheduler and SLURM's --cpus-per-task agree."""
    return job_spec(rule_name)["cpus"]


def job_resources(rule_name):
    """Snakemake resources of a rule's jobs, as the SLURM plugin reads them: runtime (minutes) and
    mem_mb always; GPUs only for rules that ask for them (gpu and gpu_model, or gres "gpu[:MODEL]:N"
    with cluster.gpu_request gres), so CPU jobs request none; the rule's partition (its own, else
    the GPU or CPU partition) and the account, constraint, QoS and extra sbatch options only when
    configured, so that otherwise the cluster's defaults apply."""
    spec = job_spec(rule_name)
    cluster = config["cluster"]
    resources = {"runtime": spec["runtime"], "mem_mb": spec["mem_mb"]}
    gpus = spec.get("gpu", 0)
    if gpus > 0 and cluster["gpu_request"] == "gres":
        model = cluster["gpu_model"]
        resources["gres"] = f"gpu:{model}:{gpus}" if model else f"gpu:{gpus}"
    elif gpus > 0:
        resources["gpu"] = gpus
        if cluster["gpu_model"]:
            resources["gpu_model"] = cluster["gpu_model"]
    partition = spec.get("partition") or cluster["gpu_partition" if gpus > 0 else "cpu_partition"]
    if partition:
        resources["slurm_partition"] = partition
    passed = {
        "account": "slurm_account",
        "constraint": "constraint",
        "qos": "qos",
        "slurm_extra": "slurm_extra",
    }
    for key, resource in passed.items():
        if cluster[key]:
            resources[resource] = cluster[key]
    return resources
