"""Build the study's reconstruction models from a config spec, and load saved ones.

A saved ``model.pt`` carries the spec it was built from, so :func:`load_model` needs nothing but
the file: a reviewer can re-run any evaluation from the checkpoint alone.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from smug import classical
from smug.io import load_torch_file
from smug.methods import KINDS, kinds_of
from smug.models.e2e_unet import ZeroFilledUNet
from smug.models.modl import RSE2E, MoDL
from smug.models.registry import build_denoiser
from smug.models.weight_encoder import WeightEncoder
from smug.models.zero_filled import ZeroFilled
from smug.untrained import UntrainedNetwork

UNROLLED_KINDS = kinds_of("unrolled")
UNET_KINDS = kinds_of("unet")
MODEL_KINDS = (*kinds_of("denoiser"), *UNROLLED_KINDS, *UNET_KINDS)


def build_model(kind: str, model_cfg: dict[str, Any], smoothing_cfg: dict[str, Any] | None = None) -> nn.Module:
    """A fresh model of ``kind``.

    Args:
        kind: one of :data:`MODEL_KINDS`.
        model_cfg: unrolled kinds: ``denoiser``, ``denoiser_args``, ``num_unrolls``, ``lam``,
            ``learn_lam``, ``lam_floor`` (learned lam only), ``cg_max_iter``, ``cg_tol``; U-Net kinds: ZeroFilledUNet's arguments.
        smoothing_cfg: smoothed kinds only (:data:`smug.methods.KINDS` lists each one's keys):
            ``sigma``, ``num_samples``, ``weight_encoder`` (kwargs of WeightEncoder), and for RS-E2E
            ``kspace_sigma``.
    """
    if kind not in MODEL_KINDS:
        raise ValueError(f"unknown model kind {kind!r}; valid: {', '.join(MODEL_KINDS)}")
    if kind in UNET_KINDS:
        return ZeroFilledUNet(**model_cfg)
    denoiser = build_denoiser(model_cfg["denoiser"], **model_cfg.get("denoiser_args", {}))
    if kind == "denoiser":
        return denoiser
    modl_kwargs = dict(
        num_unrolls=model_cfg["num_unrolls"],
        lam=model_cfg["lam"],
        learn_lam=model_cfg["learn_lam"],
        lam_floor=model_cfg.get("lam_floor", 0.01),
        cg_max_iter=model_cfg["cg_max_iter"],
        cg_tol=model_cfg["cg_tol"],
    )
    smoothing = KINDS[kind].smoothing
    if smoothing == "e2e":
        return RSE2E(
            MoDL(denoiser, **modl_kwargs),
            sigma=smoothing_cfg["kspace_sigma"],
            num_samples=smoothing_cfg["num_samples"],
        )
    if smoothing is None:
        return MoDL(denoiser, **modl_kwargs)
    encoder = WeightEncoder(**smoothing_cfg.get("weight_encoder", {})) if smoothing == "weighted" else None
    return MoDL(
        denoiser,
        smoothing=smoothing,
        sigma=smoothing_cfg["sigma"],
        num_samples=smoothing_cfg["num_samples"],
        weight_encoder=encoder,
        **modl_kwargs,
    )


def unrolled_core(model: nn.Module) -> MoDL:
    """The MoDL inside a model (itself, or the network RS-E2E smooths)."""
    return model.modl if isinstance(model, RSE2E) else model


def denoiser_of(model: nn.Module) -> nn.Module:
    """The shared denoiser of any model kind."""
    return model if not isinstance(model, (MoDL, RSE2E)) else unrolled_core(model).denoiser


def data_consistency_weight(model: nn.Module) -> float | None:
    """The current ``lam`` of an unrolled model (None for models without data consistency)."""
    if not isinstance(model, (MoDL, RSE2E)):
        return None
    return float(unrolled_core(model).lam.detach())


def read_record(path: str | os.PathLike, device: torch.device | str = "cpu") -> dict:
    """The saved record of a ``model.pt`` (spec, provenance, history and weights), without building
    the model.

    Loaded with ``weights_only=True``: tensors, numbers, strings and containers only, so a crafted
    file can never execute code when it is opened.
    """
    record = load_torch_file(path, device, what="model file")
    if not isinstance(record, dict):
        raise ValueError(f"model file {path} holds a {type(record).__name__}, not a saved model record")
    return record


def load_model(path: str | os.PathLike, device: torch.device | str = "cpu") -> tuple[nn.Module, dict]:
    """Rebuild any reconstruction method the pipeline saved: trained networks (``scripts/train.py``),
    tuned compressed sensing (``scripts/tune_classical.py``), and the settings of the untrained network
    and the zero-filled reconstruction (``scripts/write_method.py``).

    Returns ``(model in eval mode, saved record)``.
    """
    record = read_record(path, device)
    if isinstance(record, dict) and record.get("kind") == "classical":
        return classical.from_record(record).to(device).eval(), record
    if isinstance(record, dict) and record.get("kind") == "zero_filled":
        return ZeroFilled().to(device).eval(), record
    if isinstance(record, dict) and record.get("kind") == "untrained":
        return UntrainedNetwork.from_record(record).to(device).eval(), record
    if not isinstance(record, dict) or "state_dict" not in record or "spec" not in record:
        raise ValueError(f"{path} is not a model saved by this pipeline (no state_dict/spec)")
    spec = record["spec"]
    model = build_model(spec["kind"], spec["model"], spec.get("smoothing"))
    model.load_state_dict(record["state_dict"])
    return model.to(device).eval(), record
