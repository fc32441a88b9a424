"""What a config runs, derived once from it for the workflow: each model's attacks and the noise
levels that cover them, the models test-time training adapts, the models whose training health is
checked, the ablation experiments as the table reads them, and the settings some scripts receive.
Plain data, no torch: the workflow's input functions turn these into file paths.
"""

from __future__ import annotations

import hashlib
import json

from smug.study.attacks import NOISE_COUNTERPART
from smug.study.methods import ancestors, takes_unrolls


def config_hash(config: dict) -> str:
    """Identifies the configuration in every row of the result tables."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:12]


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
