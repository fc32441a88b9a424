"""Run the Snakemake workflow on a private copy of the repository, with a tiny config."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

# Smallest sizes that still exercise every code path: multicoil SENSE, CG, smoothing, two anatomies.
TINY_CONFIG = {
    # One seed keeps the many tiny runs short; the end-to-end test of the workflow uses two.
    "seeds": [0],
    "synthetic": {
        "volumes": {"train": 2, "val": 1, "test": 2},
        "slices_per_volume": 2,
        "recon_size": [32, 32],
        "kspace_size": [64, 32],
        "coils": 2,
    },
    "masks": {"eval_accelerations": [2, 4]},
    "model": {
        "denoiser": "dncnn",
        "dncnn": {"num_chans": 4, "num_layers": 3},
        "num_unrolls": 2,
        "varnet": {"num_cascades": 2, "chans": 4, "pools": 1},
        "ista": {"num_phases": 2, "num_filters": 4},
    },
    "backbones": {
        "methods": ["modl", "smug"],
        # The backbones' epoch departures set to the tiny recipe's: equal to it, they are none (the
        # label shows lambda_rec alone) and cost the tiny runs nothing.
        "settings": {
            "varnet": {"training.epochs.smug": 1, "training.epochs.weighted_smug": 1, "training.epochs.rs_e2e": 1},
            "ista": {"training.epochs.rs_e2e": 1},
        },
    },
    "smoothing": {"num_samples": 2, "weight_encoder": {"num_chans": 4, "num_blocks": 2}},
    "training": {
        "val_slices": 2,
        "batch_size": 2,
        "lr": 1e-3,
        "constant_epochs": 1,
        "epochs": {"denoiser": 1, "modl": 2, "smug": 1, "weighted_smug": 1, "rs_e2e": 1},
    },
    "baselines": {
        "unet": {"model": {"chans": 4, "num_pool_layers": 2}, "epochs": 1},
        "unet_adv": {"latent_dim": 8, "features": 4, "num_upsamples": 3, "epochs": 1},
        "modl_pgd": {"steps": 1, "epochs": 1},
        "diffusion": {"model": {"chans": 4, "num_pool_layers": 2, "steps": 3}, "epochs": 1},
    },
    "classical": {"lams": [1e-3, 1e-2], "num_iters": 5, "val_slices": 2, "levels": 1},
    "untrained": {"num_iters": 5, "channels": 4, "num_layers": 2, "patience": 2},
    "evaluation": {
        "test_slices": 4,
        "batch_size": 4,
        "attacks": {"pgd_kspace_linf": {"eps": [0.01, 0.02]}, "pgd_image_linf": {"eps": [0.004]}},
        "pgd": {"steps": 1, "eot_samples": 1},
        "unrolls": [1, 3],
        "figure": {"attack": "pgd_kspace_linf", "level": 0.02, "models": ["zero_filled", "modl", "smug"]},
        "ttt": {"models": ["modl", "smug"], "steps": 2, "patience": 1},
    },
    # One thread per job, so two tiny jobs share the two cores instead of queueing.
    "cluster": {"resources": {rule: {"cpus": 1} for rule in ("train", "attack", "evaluate", "ttt")}},
}


def _tiny_claims(ttt_models: list[str]) -> list[dict]:
    """config.yaml's claims at the tiny config's levels: 2x instead of 8x, 3 unrolls instead of 16,
    the image attack's one eps, and test-time training of the models the tiny config adapts."""
    claims = yaml.safe_load((REPO / "config" / "config.yaml").read_text())["claims"]
    levels = {"acceleration": 2.0, "unrolls": 3.0, "pgd_image_linf": 0.004}
    tiny = []
    for claim in claims:
        claim = dict(claim)
        if claim.get("perturbation") in levels:
            claim["level"] = levels[claim["perturbation"]]
        if claim["kind"] == "gap_closed":
            claim["models"] = ttt_models
        tiny.append(claim)
    return tiny


TINY_CONFIG["claims"] = _tiny_claims(TINY_CONFIG["evaluation"]["ttt"]["models"])


def claims_without_shift(claims: list[dict]) -> list[dict]:
    """The claims a config with ``data.shift_anatomy: null`` can test: none on the anatomy shift."""
    shifted = ("anatomy_shift", "ttt_anatomy_shift")
    return [
        claim
        for claim in claims
        if claim["kind"] != "gap_closed"
        and claim.get("perturbation") not in shifted
        and all(claim.get(axis, {}).get("perturbation") not in shifted for axis in ("x", "y"))
    ]


def deep_update(base: dict, overrides: dict) -> dict:
    """``base`` with ``overrides`` merged in, mappings key by key (as Snakemake merges configfiles)."""
    merged = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_update(merged[key], value)
        else:
            merged[key] = value
    return merged


def copy_workflow(dest: Path) -> Path:
    """A clean checkout-like copy: workflow, scripts, config, environment.yml."""
    for name in ("workflow", "scripts", "config"):
        shutil.copytree(REPO / name, dest / name)
    shutil.copy(REPO / "environment.yml", dest / "environment.yml")
    return dest


def write_config(dest: Path, overrides: dict, name: str = "tiny.yaml") -> Path:
    path = dest / name
    path.write_text(yaml.safe_dump(overrides))
    return path


def snakemake(
    args: list[str], cwd: Path, timeout: float = 1200, env_path: list[Path] | None = None
) -> subprocess.CompletedProcess:
    """Run Snakemake from this venv; ``env_path`` goes first on its PYTHONPATH."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    if env_path:
        env["PYTHONPATH"] = os.pathsep.join([*map(str, env_path), env.get("PYTHONPATH", "")])
    return subprocess.run(
        [str(BIN / "snakemake"), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
