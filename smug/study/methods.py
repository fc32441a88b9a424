"""Every reconstruction method, attack and figure of the study, declared once.

The workflow builds its DAG from these tables, the model factory and the training stages dispatch
on them, and the config is validated against their names (:func:`schema_names`). The module is
plain data (no torch), so building the DAG loads neither torch nor matplotlib.

A *kind* is how a model is built and trained; a *method* is a named instance of a kind, as it
appears in ``evaluation.models`` and under ``results/models/{method}/``. A trained method's spec
(:func:`spec_settings`) holds exactly the settings its kind reads, so changing one setting
retrains exactly the methods that read it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from smug.study.attacks import ATTACKS

# Keys of config/config.yaml's `training` section every trained kind reads (the optimiser, the
# schedule and the speed options); the kind-specific ones are listed per kind below.
COMMON_TRAINING = (
    "batch_size",
    "optimizer",
    "lr",
    "betas",
    "weight_decay",
    "schedule",
    "constant_epochs",
    "step_size",
    "gamma",
    "grad_clip",
    "num_workers",
    "amp",
    "channels_last",
    "cudnn_benchmark",
    "pin_memory",
)
# The denoisers a config may name (model.denoiser), each with a section of the same name holding its
# sizes; smug.models.denoisers maps each name to its network.
DENOISER_NAMES = ("didn", "dncnn", "unet")
# Keys of the `model` section an unrolled network reads (besides its denoiser).
UNROLLED_MODEL = ("num_unrolls", "lam", "learn_lam", "lam_floor", "cg_max_iter", "cg_tol", "output_bound")
# The unrolled backbones a config may name (model.backbone): MoDL (a denoiser shared by every unroll
# and conjugate-gradient data consistency, the `model` keys above), E2E-VarNet and ISTA-Net+ (their
# sizes in the `model` section of the same name). Every unrolled kind (vanilla, SMUG, Weighted SMUG,
# RS-E2E, adversarial training) runs on each; only MoDL's regulariser is a denoiser, pre-trained as one.
BACKBONES = ("modl", "varnet", "ista")
DENOISER_BACKBONE = "modl"
# What a non-MoDL backbone's spec holds: its name and its section's sizes.
BACKBONE_MODEL = ("backbone", "backbone_args")


@dataclass(frozen=True)
class Family:
    """What the models of one family share, wherever the pipeline treats families differently; how
    they are built and rebuilt from a record is :data:`smug.models.factory.FAMILY_MODELS`.

    Attributes:
        settings: where a trained model's network settings come from: ``model`` (the ``model``
            section, with the chosen denoiser's sizes, and ``training.epochs.<kind>``) or the name of
            a ``baselines`` section (its ``model``, ``training`` and ``epochs``); None for a family
            not trained by ``scripts/train.py``.
        loss: its training objective: ``denoising`` (noisy fully sampled images to clean ones),
            ``end_to_end`` (the reconstruction to the target) or ``score_matching`` (denoising score
            matching on the targets at every noise level of a diffusion prior); None if not trained.
        unrolls: whether its models take an unroll count (the unroll-count shift, its claims and
            ablations read only these).
        marker: its marker in the figures.
    """

    settings: str | None
    loss: str | None
    unrolls: bool
    marker: str


FAMILIES: dict[str, Family] = {
    "denoiser": Family("model", "denoising", unrolls=False, marker="o"),
    "unrolled": Family("model", "end_to_end", unrolls=True, marker="o"),
    "unet": Family("unet", "end_to_end", unrolls=False, marker="s"),
    "classical": Family(None, None, unrolls=False, marker="^"),
    "untrained": Family(None, None, unrolls=False, marker="D"),
    "zero_filled": Family(None, None, unrolls=False, marker="X"),
    "pretrained": Family(None, None, unrolls=False, marker="P"),
    "diffusion": Family("diffusion", "score_matching", unrolls=False, marker="*"),
}


@dataclass(frozen=True)
class Kind:
    """How the models of one kind are made.

    Attributes:
        family: its entry of :data:`FAMILIES` (``denoiser``, ``unrolled``, ``unet``, ``classical``,
            ``untrained``, ``zero_filled``, ``pretrained`` or ``diffusion``).
        made_by: the script that makes its ``model.pt``: ``train`` (``scripts/train.py``),
            ``tune_classical``, ``write_method`` or ``import_checkpoint`` (published weights).
        smoothing: where randomised smoothing acts: ``smug`` (the denoiser at every unroll),
            ``weighted`` (Weighted SMUG), ``e2e`` (the whole network), or None.
        model: keys of the ``model`` section the spec carries (unrolled and denoiser kinds; the
            U-Nets read ``baselines.unet.model``).
        smoothing_keys: keys of the ``smoothing`` section the spec carries.
        training: keys of the ``training`` section beyond :data:`COMMON_TRAINING`.
        adversarial: the ``baselines`` section of its adversary, or None.
        data_parallel: whether several ranks may train it (:mod:`smug.training.distributed`); not the
            min-max game, whose generator takes its own optimiser steps inside the objective.
        seeded: whether its ``model.pt`` follows the training seed (initialisation, data order,
            noise draws, the untrained network's fit): one per seed under
            ``results/models/{method}/seed{seed}/``; otherwise one for every seed.
        transfer: for a model no attack's gradient reaches (the untrained network fits every slice
            anew; backpropagating through a diffusion sampler's every level is too costly), the
            config section (dotted) whose ``attacks`` it is scored under, computed white-box on that
            section's ``attack_source`` and transferred (:func:`transfer_section`); None for a model
            attacked white-box.
        sampling: whether its forward pass draws noise of its own (a diffusion sampler), beside
            the smoothing kinds' (:attr:`randomised`).
    """

    family: str
    made_by: str
    smoothing: str | None = None
    model: tuple[str, ...] = ()
    smoothing_keys: tuple[str, ...] = ()
    training: tuple[str, ...] = ()
    adversarial: str | None = None
    data_parallel: bool = True
    seeded: bool = True
    transfer: str | None = None
    sampling: bool = False

    @property
    def randomised(self) -> bool:
        """Whether its forward pass draws noise (attacks then average gradients over draws)."""
        return self.smoothing is not None or self.sampling


_DENOISER = ("denoiser", "denoiser_args")

KINDS: dict[str, Kind] = {
    "denoiser": Kind("denoiser", "train", model=_DENOISER, training=("pretrain_sigma",)),
    "modl": Kind("unrolled", "train", model=(*_DENOISER, *UNROLLED_MODEL), training=("loss",)),
    "smug": Kind(
        "unrolled",
        "train",
        "smug",
        model=(*_DENOISER, *UNROLLED_MODEL),
        smoothing_keys=("sigma", "num_samples"),
        training=("ustab_target", "lambda_rec"),
    ),
    "weighted_smug": Kind(
        "unrolled",
        "train",
        "weighted",
        model=(*_DENOISER, *UNROLLED_MODEL),
        smoothing_keys=("sigma", "num_samples", "weight_encoder", "weight_scores", "weight_normalisation"),
        training=("ustab_target", "lambda_rec"),
    ),
    "rs_e2e": Kind(
        "unrolled",
        "train",
        "e2e",
        model=(*_DENOISER, *UNROLLED_MODEL),
        smoothing_keys=("kspace_sigma", "num_samples"),
    ),
    "modl_pgd": Kind(
        "unrolled", "train", model=(*_DENOISER, *UNROLLED_MODEL), training=("loss",), adversarial="modl_pgd"
    ),
    "unet": Kind("unet", "train", training=("loss",)),
    "unet_adv": Kind("unet", "train", training=("loss",), adversarial="unet_adv", data_parallel=False),
    "classical": Kind("classical", "tune_classical", seeded=False),
    "untrained": Kind("untrained", "write_method", transfer="untrained"),
    "zero_filled": Kind("zero_filled", "write_method", seeded=False),
    "fastmri": Kind("pretrained", "import_checkpoint", seeded=False),
    "diffusion": Kind("diffusion", "train", transfer="baselines.diffusion", sampling=True),
}


@dataclass(frozen=True)
class Method:
    """A named method: its kind, the trained method it starts from, (min-max U-Nets) the domain its
    adversary perturbs, and (published weights) the fastMRI architecture its checkpoint holds."""

    kind: str
    init: str | None = None
    domain: str | None = None
    label: str = ""
    architecture: str | None = None


METHODS: dict[str, Method] = {
    "zero_filled": Method("zero_filled", label="Zero-filled"),
    "cs_l1_wavelet": Method("classical", label="CS (l1-wavelet)"),
    "cs_tv": Method("classical", label="CS (TV)"),
    "untrained": Method("untrained", label="Untrained network"),
    "denoiser": Method("denoiser", label="Denoiser"),
    "unet": Method("unet", label="U-Net"),
    "unet_adv": Method("unet_adv", domain="image", label="U-Net (min-max, image)"),
    "unet_adv_kspace": Method("unet_adv", domain="kspace", label="U-Net (min-max, k-space)"),
    "modl": Method("modl", init="denoiser", label="MoDL"),
    "modl_pgd": Method("modl_pgd", init="modl", label="MoDL-PGD"),
    "smug": Method("smug", init="denoiser", label="SMUG"),
    "weighted_smug": Method("weighted_smug", init="denoiser", label="Weighted SMUG"),
    "rs_e2e": Method("rs_e2e", init="modl", label="RS-E2E"),
    # fastMRI's published weights (config `pretrained`: the checkpoint's path), evaluated as they are.
    "fastmri_unet": Method("fastmri", architecture="unet", label="fastMRI U-Net (published)"),
    "fastmri_varnet": Method("fastmri", architecture="varnet", label="fastMRI E2E-VarNet (published)"),
    "diffusion": Method("diffusion", label="Diffusion (score prior + DC)"),
}


def method_label(name: str) -> str:
    """A method's display name (``METHODS[name].label``), or the name itself for one not registered."""
    method = METHODS.get(name)
    return method.label if method is not None and method.label else name


def method_family(name: str) -> str | None:
    """A method's family (``unrolled``, ``unet``, ``classical``, ...), or None for one not registered."""
    method = METHODS.get(name)
    return KINDS[method.kind].family if method is not None else None


def takes_unrolls(name: str) -> bool:
    """Whether a method's models take an unroll count (:attr:`Family.unrolls`)."""
    family = method_family(name)
    return family is not None and FAMILIES[family].unrolls


# How tables and figures group methods: families listed together, in this order; a method of a
# family not listed (or not registered) falls under OTHER_GROUP.
FAMILY_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Unrolled networks", ("unrolled",)),
    ("U-Nets", ("unet",)),
    ("Published weights", ("pretrained",)),
    ("Generative priors", ("diffusion",)),
    ("CS, untrained, zero-filled", ("classical", "untrained", "zero_filled")),
    ("Denoiser", ("denoiser",)),
)
OTHER_GROUP = "Other"


def family_group(name: str) -> str:
    """The group of :data:`FAMILY_GROUPS` a method is listed under."""
    family = method_family(name)
    return next((title for title, families in FAMILY_GROUPS if family in families), OTHER_GROUP)


def group_methods(names) -> list[tuple[str, list[str]]]:
    """``(group, methods)`` for the given method names: groups in :data:`FAMILY_GROUPS` order, methods
    in the registry's order within each (unregistered ones last, alphabetically), empty groups left out."""
    registry = list(METHODS)
    ranked = sorted(set(names), key=lambda m: (registry.index(m) if m in registry else len(registry), m))
    titles = [title for title, _ in FAMILY_GROUPS] + [OTHER_GROUP]
    groups = {title: [m for m in ranked if family_group(m) == title] for title in titles}
    return [(title, members) for title, members in groups.items() if members]


def seeded(method: str) -> bool:
    """Whether a method's model follows the training seed (:attr:`Kind.seeded`)."""
    return KINDS[METHODS[method].kind].seeded


def seed_of_path(path) -> int | None:
    """The training seed of a file the pipeline keeps under a ``seed{seed}`` folder, or None."""
    for part in reversed(str(path).replace("\\", "/").split("/")[:-1]):
        if _SEED_FOLDER.fullmatch(part):
            return int(part[4:])
    return None


def model_name(path) -> str:
    """The method (or ablation variant) a ``model.pt`` is of, from where the pipeline keeps it:
    ``results/models/{name}/model.pt`` or, one per training seed, ``.../{name}/seed{seed}/model.pt``
    (and likewise an evaluation's ``results/eval/seed{seed}/{name}.csv`` parent folders)."""
    parts = str(path).replace("\\", "/").split("/")
    folder = parts[-2] if len(parts) > 1 else ""
    if len(parts) > 2 and _SEED_FOLDER.fullmatch(folder):
        return parts[-3]
    return folder


_SEED_FOLDER = re.compile(r"seed\d+")


def transfer_section(config: dict, method: str) -> dict | None:
    """The config section of a method no attack's gradient reaches (:attr:`Kind.transfer`): its
    ``attacks`` are computed on its ``attack_source`` and transferred to it; None for a method
    attacked white-box or not registered. An ablation variant (``diffusion@...``) is its method's."""
    entry = METHODS.get(method.split("@", 1)[0])
    path = KINDS[entry.kind].transfer if entry is not None else None
    if path is None:
        return None
    section = config
    for key in path.split("."):
        section = section[key]
    return section


def transferred_methods() -> list[str]:
    """The registered methods scored under transferred attacks only (:attr:`Kind.transfer`)."""
    return [name for name, m in METHODS.items() if KINDS[m.kind].transfer is not None]


def pretrained_methods() -> list[str]:
    """The methods whose ``model.pt`` holds published weights (``scripts/import_checkpoint.py``)."""
    return [name for name, m in METHODS.items() if KINDS[m.kind].made_by == "import_checkpoint"]


def trained_methods() -> dict[str, Method]:
    """The methods ``scripts/train.py`` makes, in declaration order."""
    return {name: m for name, m in METHODS.items() if KINDS[m.kind].made_by == "train"}


def start_method(method: str, backbone: str = DENOISER_BACKBONE) -> str | None:
    """The trained method a method starts from on ``backbone``: the registry's ``init``, except that a
    backbone whose regulariser is no denoiser (E2E-VarNet, ISTA-Net+) has no denoiser to pre-train:
    its vanilla network (``modl``) is trained from scratch and the methods that start from the
    pre-trained denoiser start from that vanilla network instead."""
    init = METHODS[method].init
    if backbone == DENOISER_BACKBONE or init is None or METHODS[init].kind != "denoiser":
        return init
    return None if METHODS[method].kind == "modl" else "modl"


def ancestors(method: str, backbone: str = DENOISER_BACKBONE) -> list[str]:
    """The trained methods a method is initialised from, nearest first (RS-E2E: MoDL, the denoiser)."""
    chain = []
    parent = start_method(method, backbone)
    while parent is not None:
        chain.append(parent)
        parent = start_method(parent, backbone)
    return chain


def check_backbone(method: str, backbone: str, where: str = "model.backbone") -> None:
    """Raise, naming ``where``, if ``method`` cannot run on ``backbone`` (an unknown backbone, or a
    method that is no unrolled network: the backbone would change nothing of it)."""
    if backbone not in BACKBONES:
        raise ValueError(
            f"config error: {where}: unknown backbone {backbone!r}; valid: {', '.join(BACKBONES)}"
        )
    family = KINDS[METHODS[method].kind].family
    if backbone != DENOISER_BACKBONE and family != "unrolled":
        raise ValueError(
            f"config error: {where}: {method!r} is a {family} method, which the {backbone} backbone "
            f"cannot take (backbones carry the unrolled methods: {', '.join(unrolled_methods())})"
        )


def unrolled_methods() -> list[str]:
    """The registered methods of the unrolled family (those a backbone carries)."""
    return [name for name, m in METHODS.items() if KINDS[m.kind].family == "unrolled"]


# The families a backbones comparison may show beside the backbones (backbones.baselines): learned
# reconstructions with no backbone of their own; CS and zero-filled are its health references.
BASELINE_FAMILIES = ("unet", "untrained", "pretrained", "diffusion")


def backbone_baselines() -> list[str]:
    """The registered methods ``backbones.baselines`` may name (:data:`BASELINE_FAMILIES`)."""
    return [name for name, m in METHODS.items() if KINDS[m.kind].family in BASELINE_FAMILIES]


def spec_settings(method: str, config: dict) -> dict:
    """The settings of a trained method's spec, taken from a validated config: exactly those its
    kind reads (``model``, ``smoothing``, ``adversarial``, ``training`` with its ``epochs``)."""
    entry = METHODS[method]
    kind = KINDS[entry.kind]
    baselines = config["baselines"]
    training = {
        key: config["training"][key]
        for key in (*COMMON_TRAINING, *kind.training)
        if key in config["training"]
    }
    source = FAMILIES[kind.family].settings
    if source != "model":
        model = baselines[source]["model"]
        training.update(baselines[source]["training"])
        epochs = baselines[source]["epochs"]
    else:
        section = config["model"]
        backbone = section.get("backbone", DENOISER_BACKBONE)
        if kind.family == "unrolled" and backbone != DENOISER_BACKBONE:
            model = {"backbone": backbone, "backbone_args": dict(section[backbone])}
        else:
            model = {key: section[key] for key in kind.model if key in section}
            model["denoiser_args"] = section[section["denoiser"]]
        epochs = config["training"]["epochs"].get(entry.kind)
        if kind.family == "unrolled" and backbone != DENOISER_BACKBONE and entry.kind == "modl":
            # No denoiser to pre-train: the vanilla network trains from scratch for the epochs of
            # MoDL's pre-training and fine-tuning together, the same budget.
            epochs += config["training"]["epochs"]["denoiser"]
    adversarial = None
    if kind.adversarial is not None:
        adversarial = {k: v for k, v in baselines[kind.adversarial].items() if k != "epochs"}
        if entry.domain is not None:
            adversarial["domain"] = entry.domain
        epochs = baselines[kind.adversarial]["epochs"]
    training["epochs"] = epochs
    settings = {"model": model, "training": training}
    if kind.smoothing_keys:
        settings["smoothing"] = {key: config["smoothing"][key] for key in kind.smoothing_keys}
    if adversarial is not None:
        settings["adversarial"] = adversarial
    return settings


def schema_names() -> dict[str, list[str]]:
    """The registry's names as the config schema's ``$defs`` enums (filled in when the config is
    validated): every evaluated method, the trained networks test-time training adapts, the min-max
    U-Nets whose generators attack, the white-box attacks and the denoisers."""
    trained = [name for name in trained_methods() if METHODS[name].kind != "denoiser"]
    return {
        "evaluated_method": [name for name, m in METHODS.items() if m.kind != "denoiser"],
        "adaptable_method": trained,
        "generator_method": [name for name in trained if KINDS[METHODS[name].kind].adversarial == "unet_adv"],
        "white_box_attack": [name for name, attack in ATTACKS.items() if attack.noise is not None],
        "denoiser": list(DENOISER_NAMES),
        "backbone": list(BACKBONES),
        "unrolled_method": unrolled_methods(),
        "backbone_baseline": backbone_baselines(),
    }


FIGURES = (
    "robustness_curves",
    "acceleration_shift",
    "unroll_shift",
    "image_grid",
    "perturbations",
    "anatomy_shift",
    "small_features",
)
