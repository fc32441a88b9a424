"""Build the study's trained networks from a config spec, and rebuild them from a saved record."""

from __future__ import annotations

from typing import Any, Callable

from torch import nn

from smug.methods import KINDS
from smug.models.e2e_unet import ZeroFilledUNet
from smug.models.modl import RSE2E, MoDL
from smug.models.registry import build_denoiser
from smug.models.weight_encoder import WeightEncoder

Builder = Callable[[str, dict[str, Any], dict[str, Any] | None], nn.Module]


def _denoiser(kind: str, model_cfg: dict[str, Any], smoothing_cfg: dict[str, Any] | None) -> nn.Module:
    return build_denoiser(model_cfg["denoiser"], **model_cfg.get("denoiser_args", {}))


def _unet(kind: str, model_cfg: dict[str, Any], smoothing_cfg: dict[str, Any] | None) -> nn.Module:
    return ZeroFilledUNet(**model_cfg)


def _unrolled(kind: str, model_cfg: dict[str, Any], smoothing_cfg: dict[str, Any] | None) -> nn.Module:
    """MoDL around a fresh denoiser, smoothed where the kind's registry entry says."""
    denoiser = _denoiser(kind, model_cfg, smoothing_cfg)
    modl_kwargs = dict(
        num_unrolls=model_cfg["num_unrolls"],
        lam=model_cfg["lam"],
        learn_lam=model_cfg["learn_lam"],
        lam_floor=model_cfg.get("lam_floor", 0.01),
        cg_max_iter=model_cfg["cg_max_iter"],
        cg_tol=model_cfg["cg_tol"],
        output_bound=model_cfg.get("output_bound"),
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
    weighting = {}
    if smoothing == "weighted":
        weighting = {
            key: smoothing_cfg[key] for key in ("weight_scores", "weight_normalisation") if key in smoothing_cfg
        }
        weighting["weight_encoder"] = WeightEncoder(**smoothing_cfg.get("weight_encoder", {}))
    return MoDL(
        denoiser,
        smoothing=smoothing,
        sigma=smoothing_cfg["sigma"],
        num_samples=smoothing_cfg["num_samples"],
        **weighting,
        **modl_kwargs,
    )


# One builder per family of smug.methods.KINDS that trains a network: a new kind of these families
# needs only its registry entry.
_BUILDERS: dict[str, Builder] = {"denoiser": _denoiser, "unrolled": _unrolled, "unet": _unet}
MODEL_KINDS = tuple(name for name, kind in KINDS.items() if kind.family in _BUILDERS)


def build_model(kind: str, model_cfg: dict[str, Any], smoothing_cfg: dict[str, Any] | None = None) -> nn.Module:
    """A fresh network of ``kind``, built by its family in :data:`smug.methods.KINDS`.

    Args:
        kind: one of :data:`MODEL_KINDS`.
        model_cfg: denoiser and unrolled kinds: ``denoiser``, ``denoiser_args``; unrolled kinds also
            ``num_unrolls``, ``lam``, ``learn_lam``, ``lam_floor`` (learned lam only), ``cg_max_iter``,
            ``cg_tol``, ``output_bound`` (absent: unbounded); U-Net kinds: ZeroFilledUNet's arguments.
        smoothing_cfg: smoothed kinds only (:data:`smug.methods.KINDS` lists each one's keys):
            ``sigma``, ``num_samples``, ``weight_encoder`` (kwargs of WeightEncoder), ``weight_scores``
            and ``weight_normalisation`` (Weighted SMUG; absent: MoDL's defaults), and for RS-E2E
            ``kspace_sigma``.
    """
    if kind not in MODEL_KINDS:
        raise ValueError(f"unknown model kind {kind!r}; valid: {', '.join(MODEL_KINDS)}")
    return _BUILDERS[KINDS[kind].family](kind, model_cfg, smoothing_cfg)


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
