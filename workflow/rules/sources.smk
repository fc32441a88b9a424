# The data and how it is sampled, as input functions of the data and mask rules: the embedded
# synthetic dataset's files, or fastMRI's datasets (downloaded and verified, or already on disk),
# their indexes, splits and sensitivity maps; and the undersampling masks.
from pathlib import Path

from smug.data import sens_map_path, volume_paths, volume_plan
from smug.study import plan


def synthetic_plan():
    syn = config["synthetic"]
    return volume_plan(syn["seed"], syn["volumes"], syn["anatomies"])


def synthetic_root(wildcards, output):
    """Dataset root above the {challenge}_{split}/ folders of the volumes."""
    return str(Path(output.volume_files[0]).parents[1])


def synthetic_volumes():
    """Every fastMRI-format HDF5 file of the synthetic dataset (none when the data are fastMRI's)."""
    return SOURCE["generated_volumes"]()


def synthetic_sens_maps():
    """The true coil sensitivities written beside multicoil synthetic volumes (none for singlecoil)."""
    if config["data"]["challenge"] != "multicoil":
        return []
    return [str(sens_map_path(config["data"]["root"], spec.fname)) for spec in SOURCE["generated_plan"]()]


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


def fastmri_index_inputs(wildcards):
    """Nothing when the data are already on disk (fastmri.root), else the completed download."""
    if config["fastmri"]["root"]:
        return {}
    return {"marker": fastmri_marker().format(dataset=wildcards.dataset)}


def fastmri_split_inputs(split, anatomy):
    check_fastmri_splits()
    datasets = plan.fastmri_split(config, split, anatomy)["dataset"]
    return {"index": expand("resources/fastmri/index/{dataset}.csv", dataset=datasets)}


def split_anatomy(wildcards):
    """The anatomy an index is filtered to (None: the source's volumes are one anatomy already)."""
    return wildcards.anatomy if SOURCE["indexed"] else None


def split_sens_maps(split, anatomy):
    """Sensitivity maps a multicoil split needs: the true maps of synthetic volumes, or the folder
    of maps estimated from the fastMRI k-space; nothing for single-coil data."""
    if config["data"]["challenge"] != "multicoil":
        return []
    return SOURCE["sens_maps"](split, anatomy)


def synthetic_split_sens_maps(split, anatomy):
    plan = [spec for spec in synthetic_plan() if spec.split == split and spec.anatomy == anatomy]
    return [str(sens_map_path(config["data"]["root"], spec.fname)) for spec in plan]


def recon_size():
    """(h, w) every slice is cropped to; the masks' width."""
    return config[SOURCE["section"]]["recon_size"]


# What each data.source gives the rules above; a new source is one entry here, its rules in
# data.smk, and its config section:
# - section: the config section holding its recon_size;
# - generated_plan, generated_volumes: the volumes the pipeline generates (rule synthetic_dataset);
# - split_inputs: a split list's inputs (the generated volumes, or the datasets' indexes);
# - split_entry: a split's start or count within its datasets (None: every volume, as it is);
# - indexed: whether its split lists are filtered from folder indexes by anatomy;
# - sens_maps: a multicoil split's sensitivity maps (true ones, or the estimated folder).
SOURCES = {
    "synthetic": {
        "section": "synthetic",
        "generated_plan": synthetic_plan,
        "generated_volumes": lambda: [
            str(p)
            for p in volume_paths(config["data"]["root"], config["data"]["challenge"], synthetic_plan())
        ],
        "split_inputs": lambda split, anatomy: {"volumes": split_volumes(split, anatomy)},
        "split_entry": lambda split, anatomy, key: None,
        "indexed": False,
        "sens_maps": synthetic_split_sens_maps,
    },
    "fastmri": {
        "section": "fastmri",
        "generated_plan": lambda: [],
        "generated_volumes": lambda: [],
        "split_inputs": fastmri_split_inputs,
        "split_entry": lambda split, anatomy, key: plan.fastmri_split(config, split, anatomy)[key],
        "indexed": True,
        "sens_maps": lambda split, anatomy: [f"resources/fastmri/sens_maps/{split}_{anatomy}"],
    },
}
SOURCE = SOURCES[config["data"]["source"]]


# ---- undersampling masks ---------------------------------------------------------------------


def mask_files():
    return expand("resources/masks/{acc}x.npz", acc=plan.mask_accelerations(config))


def training_mask():
    """The mask of the training acceleration, which every model is trained and tested with."""
    return expand("resources/masks/{acc}x.npz", acc=config["masks"]["acceleration"])[0]
