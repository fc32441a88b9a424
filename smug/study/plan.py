"""What a config runs, derived once from it for the workflow: the masks' accelerations, the slices
each split needs, each model's training spec, attacks and the noise levels that cover them, the
models test-time training adapts, the models whose training health is checked, the ablation
experiments' models as the rules and the table read them, and the settings some scripts receive.
Plain data, no torch: the workflow's input functions turn these into file paths.
"""

from __future__ import annotations

import hashlib
import json

from smug.study.attacks import NOISE_COUNTERPART
from smug.study.ablations import model_setup
from smug.study.methods import (
    METHODS,
    ancestors,
    spec_settings,
    takes_unrolls,
    trained_methods,
    transfer_section,
)

# The ablations' health checks hold every model against these, evaluated clean on the same slices.
HEALTH_REFERENCES = ("zero_filled", "cs_tv")


def config_hash(config: dict) -> str:
    """Identifies the configuration in every row of the result tables."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:12]


# ---- data and masks ---------------------------------------------------------------------------


def mask_accelerations(config: dict) -> list[float]:
    """The training acceleration and every acceleration a model is evaluated at, sorted."""
    masks = config["masks"]
    return sorted({masks["acceleration"], *masks["eval_accelerations"]})


def mask_center_fractions(config: dict) -> list[float]:
    """Centre fractions paired with :func:`mask_accelerations`: the number of fully sampled centre
    lines scales as 1/acceleration, as fastMRI pairs 4x with 8% and 8x with 4%."""
    masks = config["masks"]
    return [masks["center_fraction"] * masks["acceleration"] / acc for acc in mask_accelerations(config)]


def split_slices(config: dict, split: str) -> int | None:
    """Slices each consumer of a split uses (None: all); sensitivity maps are estimated for the
    largest count, whose central-slice selection contains every smaller one
    (:func:`smug.data.datasets.select_slices`)."""
    counts = {
        "train": [config["training"]["train_slices"]],
        "val": [config["training"]["val_slices"], config["classical"]["val_slices"]],
        "test": [config["evaluation"]["test_slices"]],
    }[split]
    return None if None in counts else max(counts)


def volume_limits(config: dict) -> list[int]:
    """``data.volume_limits`` as SLICES COILS HEIGHT WIDTH."""
    limits = config["data"]["volume_limits"]
    return [limits[key] for key in ("max_slices", "max_coils", "max_height", "max_width")]


def fastmri_split(config: dict, split: str, anatomy: str) -> dict:
    """The ``fastmri.splits`` entry of a split: ``dataset`` (a list), ``start`` and ``count``."""
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


# ---- models, their attacks and evaluation ----------------------------------------------------


def training_spec(config: dict, name: str, seed: int, variants: dict) -> dict:
    """The spec ``scripts/train.py`` receives for model ``name``: exactly the settings that determine
    its weights (:func:`smug.study.methods.spec_settings`, an ablation variant's settings applied)
    and the method it starts from, so a setting change retrains only the models reading it.

    Args:
        variants: :func:`smug.study.ablations.variant_models` of the config.
    """
    method, settings, init = model_setup(name, config, variants)
    return {
        "name": name,
        "kind": METHODS[method].kind,
        "init": init,
        "seed": seed,
        **spec_settings(method, settings),
        "data": {
            "challenge": config["data"]["challenge"],
            "train_slices": config["training"]["train_slices"],
            "val_slices": config["training"]["val_slices"],
        },
    }


def model_perturbations(config: dict, model: str, attacks: list[str] | None = None) -> list[tuple[str, str]]:
    """``(folder, attack)`` of every perturbation a model is evaluated under: its attacks (folder:
    the model, or for a model no gradient reaches, :func:`smug.study.methods.transfer_section`'s
    ``attack_source``, transferred from it) and random noise of the same balls (folder: ``noise``).

    Args:
        attacks: the attacks (by default its configured ones: :func:`model_attacks`, or its transfer
            section's ``attacks``).
    """
    section = transfer_section(config, model)
    if attacks is None:
        attacks = model_attacks(config, model) if section is None else list(section["attacks"])
    folder = model if section is None else section["attack_source"]
    noise = dict.fromkeys(NOISE_COUNTERPART[a] for a in attacks)
    return [(folder, a) for a in attacks] + [("noise", n) for n in noise]


def model_attacks(config: dict, model: str) -> list[str]:
    """The configured attacks a model is evaluated under (an attack may name the models it is for)."""
    return [
        name
        for name, entry in config["evaluation"]["attacks"].items()
        if entry.get("models") is None or model in entry["models"]
    ]


def attack_loss_target(config: dict, attack: str) -> str:
    """What a white-box attack's loss compares with: its own loss_target, else evaluation.pgd's."""
    entry = config["evaluation"]["attacks"][attack]
    return entry.get("loss_target", config["evaluation"]["pgd"]["loss_target"])


def noise_eps(config: dict, noise: str) -> list[float]:
    """The levels of a random-noise attack: the union of the eps grids of every configured attack
    whose counterpart it is (the same norm ball)."""
    grids = [
        entry["eps"]
        for name, entry in config["evaluation"]["attacks"].items()
        if NOISE_COUNTERPART[name] == noise
    ]
    return sorted({eps for grid in grids for eps in grid})


def ttt_models(config: dict) -> list[str]:
    """Trained networks adapted by test-time training (none without an anatomy shift)."""
    if not config["data"]["shift_anatomy"]:
        return []
    return [m for m in config["evaluation"]["ttt"]["models"] if m in config["evaluation"]["models"]]


def ttt_settings(config: dict) -> dict:
    keys = ("steps", "lr", "holdout_fraction", "patience")
    return {key: config["evaluation"]["ttt"][key] for key in keys}


def untrained_settings(config: dict, seed: int) -> dict:
    """The untrained network's settings; the seed fixes its input, weights and held-out columns."""
    keys = ("num_iters", "lr", "channels", "num_layers", "holdout_fraction", "patience")
    return {**{key: config["untrained"][key] for key in keys}, "seed": seed}


def health_models(config: dict) -> list[str]:
    """Every evaluated method and the pre-trained models they start from (the denoiser)."""
    models = list(config["evaluation"]["models"])
    for model in config["evaluation"]["models"]:
        models += [m for m in ancestors(model) if m not in models]
    return models


# ---- ablations ---------------------------------------------------------------------------------
# ``experiments`` below is :func:`smug.study.ablations.experiment_models` of the config.


def ablation_models(experiments: dict) -> list[str]:
    """Every model of an experiment (variants and references), each once."""
    return list(dict.fromkeys(m.name for models in experiments.values() for m in models))


def ablation_scored_models(experiments: dict) -> list[str]:
    """The experiments' models and the health references, each once."""
    return list(dict.fromkeys([*ablation_models(experiments), *HEALTH_REFERENCES]))


def ablation_trained_models(experiments: dict, variants: dict) -> list[str]:
    """The experiments' models with a training record (all but zero-filled, CS, untrained).

    Args:
        variants: :func:`smug.study.ablations.variant_models` of the config.
    """
    trained = trained_methods()
    return [m for m in ablation_models(experiments) if m in variants or m in trained]


def ablation_attacks(config: dict, experiments: dict, model: str) -> list[str]:
    """A model's perturbations under ``ablations.attacks``; the models no gradient reaches (the
    untrained network, the diffusion sampler) and the health references that are not themselves in
    an experiment are scored clean only."""
    if transfer_section(config, model) is not None or (
        model in HEALTH_REFERENCES and model not in ablation_models(experiments)
    ):
        return []
    return list(config["ablations"]["attacks"])


def diagnosed_models(config: dict, experiments: dict) -> list[str]:
    """The models of the experiments with ``diagnostics: true`` that take an unroll count.

    Args:
        experiments: :func:`smug.study.ablations.experiment_models` of the config.
    """
    names = []
    for experiment, models in experiments.items():
        if config["ablations"]["experiments"][experiment]["diagnostics"]:
            names += [m.name for m in models if takes_unrolls(m.method)]
    return list(dict.fromkeys(names))


def backbone_perturbations(config: dict, model: str) -> list[tuple[str, str]]:
    """``(folder, attack)`` of a backbones model's perturbations: ``backbones.attacks``, white-box on
    the model itself, or for a baseline no gradient reaches (the diffusion sampler) transferred from
    its ``attack_source`` with the attacks' random noise (:func:`model_perturbations`); none for the
    health references, scored clean only."""
    if model in HEALTH_REFERENCES:
        return []
    attacks = list(config["backbones"]["attacks"])
    if transfer_section(config, model) is not None:
        return model_perturbations(config, model, attacks)
    return [(model, attack) for attack in attacks]


def backbone_experiment(models: list) -> dict[str, list[dict]]:
    """The backbones' models as the ablation table's script reads them, one experiment ``backbones``.

    Args:
        models: :func:`smug.study.ablations.backbone_models` of the config.
    """
    return {
        "backbones": [
            {"model": m.name, "method": m.method, "setting": m.label, "role": m.role, "diagnosed": False}
            for m in models
        ]
    }


def ablation_experiments(config: dict, experiments: dict) -> dict[str, list[dict]]:
    """Each experiment's models as the ablation table's script reads them (``--experiments``)."""
    diagnosed = diagnosed_models(config, experiments)
    table = {}
    for experiment, models in experiments.items():
        shows = config["ablations"]["experiments"][experiment]["diagnostics"]
        table[experiment] = [
            {
                "model": m.name,
                "method": m.method,
                "setting": m.label,
                "role": m.role,
                "diagnosed": shows and m.name in diagnosed,
            }
            for m in models
        ]
    return table
