"""Build the study's trained networks from a config spec, and rebuild them from a saved record."""

from __future__ import annotations

from typing import Any

from torch import nn

from smug.methods import KINDS, kinds_of
from smug.models.e2e_unet import ZeroFilledUNet
from smug.models.modl import RSE2E, MoDL
from smug.models.registry import build_denoiser
from smug.models.weight_encoder import WeightEncoder

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


def network_from_record(record: dict[str, Any]) -> nn.Module:
    """The trained network of a saved ``model.pt`` record (its ``spec`` and ``state_dict``), in eval mode."""
    if "state_dict" not in record or "spec" not in record:
        raise ValueError("not a trained network's record (no state_dict/spec)")
    spec = record["spec"]
    model = build_model(spec["kind"], spec["model"], spec.get("smoothing"))
    model.load_state_dict(record["state_dict"])
    return model.eval()
