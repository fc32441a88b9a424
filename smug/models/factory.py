"""Build the study's trained networks from a config spec, and rebuild them from a saved record."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
from torch import nn

from smug.study import KINDS
from smug.models.e2e_unet import ZeroFilledUNet
from smug.models.generator import PerturbationGenerator
from smug.models.modl import RSE2E, MoDL
from smug.models.denoisers import DENOISERS, MAX_PARAMETERS, build_denoiser, check_arguments
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
            key: smoothing_cfg[key]
            for key in ("weight_scores", "weight_normalisation")
            if key in smoothing_cfg
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


# One builder per family of smug.study.methods.KINDS that trains a network: a new kind of these families
# needs only its registry entry.
_BUILDERS: dict[str, Builder] = {"denoiser": _denoiser, "unrolled": _unrolled, "unet": _unet}
MODEL_KINDS = tuple(name for name, kind in KINDS.items() if kind.family in _BUILDERS)


def build_model(
    kind: str, model_cfg: dict[str, Any], smoothing_cfg: dict[str, Any] | None = None
) -> nn.Module:
    """A fresh network of ``kind``, built by its family in :data:`smug.study.methods.KINDS`.

    Args:
        kind: one of :data:`MODEL_KINDS`.
        model_cfg: denoiser and unrolled kinds: ``denoiser``, ``denoiser_args``; unrolled kinds also
            ``num_unrolls``, ``lam``, ``learn_lam``, ``lam_floor`` (learned lam only), ``cg_max_iter``,
            ``cg_tol``, ``output_bound`` (absent: unbounded); U-Net kinds: ZeroFilledUNet's arguments.
        smoothing_cfg: smoothed kinds only (:data:`smug.study.methods.KINDS` lists each one's keys):
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


class _MissingSetting(ValueError):
    """A setting a builder needs and the spec lacks."""


class _Section(dict):
    """A spec section that names itself when a builder looks up a key it lacks."""

    def __init__(self, where: str, settings: dict[str, Any]):
        super().__init__(settings)
        self.where = where

    def __missing__(self, key: str) -> Any:
        raise _MissingSetting(f"{self.where} has no {key!r}")


def check_spec(spec: Any) -> None:
    """Check a saved spec's structure, keys, types and sizes before anything is built from it.

    The keys a kind's ``model`` and ``smoothing`` sections may hold are its entry of
    :data:`smug.study.methods.KINDS` (the U-Nets': ZeroFilledUNet's arguments); the type of each setting is
    the one the network it sets annotates; sizes are bounded by
    :data:`smug.models.denoisers.SIZE_LIMITS`.

    Raises:
        ValueError: naming the offending key, e.g. ``spec.model.denoiser_args.num_layers``.
    """
    if not isinstance(spec, dict):
        raise ValueError(f"spec is a {type(spec).__name__}, not a mapping")
    if "kind" not in spec:
        raise ValueError("spec has no 'kind'")
    kind = spec["kind"]
    if not isinstance(kind, str) or kind not in MODEL_KINDS:
        raise ValueError(f"spec.kind is {kind!r}, not a trained kind ({', '.join(MODEL_KINDS)})")
    entry = KINDS[kind]
    if "model" not in spec:
        raise ValueError("spec has no 'model' section")
    model = spec["model"]
    if entry.family == "unet":
        check_arguments("spec.model", model, ZeroFilledUNet)
    else:
        check_arguments("spec.model", model, MoDL, allowed=entry.model)
        if "denoiser" not in model:
            raise ValueError("spec.model has no 'denoiser'")
        name = model["denoiser"]
        if not isinstance(name, str) or name.lower() not in DENOISERS:
            raise ValueError(f"spec.model.denoiser is {name!r}, not one of {', '.join(sorted(DENOISERS))}")
        check_arguments("spec.model.denoiser_args", model.get("denoiser_args", {}), DENOISERS[name.lower()])
    if entry.smoothing_keys:
        if not isinstance(spec.get("smoothing"), dict):
            if spec.get("smoothing") is None:
                raise ValueError("spec has no 'smoothing' section")
            raise ValueError(f"spec.smoothing is a {type(spec['smoothing']).__name__}, not a mapping")
        smoothing = spec["smoothing"]
        check_arguments(
            "spec.smoothing", smoothing, MoDL, allowed=entry.smoothing_keys, aliases=_SMOOTHING_ARGUMENTS
        )
        if "weight_encoder" in smoothing:
            check_arguments("spec.smoothing.weight_encoder", smoothing["weight_encoder"], WeightEncoder)


# Smoothing settings named otherwise than MoDL's argument they are checked as (RS-E2E's k-space sigma
# is a float like MoDL's sigma; the weight encoder's settings are checked against WeightEncoder).
_SMOOTHING_ARGUMENTS = {"kspace_sigma": "sigma"}


def _smoothing(spec: dict[str, Any]) -> dict[str, Any] | None:
    """The ``smoothing`` section of a checked spec, None for a kind that reads none."""
    return _Section("spec.smoothing", spec["smoothing"]) if KINDS[spec["kind"]].smoothing_keys else None


def _skeleton(spec: dict[str, Any]) -> nn.Module:
    """The spec's network on the ``meta`` device: its parameters' shapes, with no memory behind them."""
    kind = spec["kind"]
    try:
        with torch.random.fork_rng(devices=[]), torch.device("meta"):
            return build_model(kind, _Section("spec.model", spec["model"]), _smoothing(spec))
    except _MissingSetting:
        raise
    except (ValueError, RuntimeError, TypeError, OverflowError) as exc:  # the networks' own checks
        raise ValueError(f"spec does not describe a valid {kind} network: {_first_line(exc)}") from None


def check_state_dict(state_dict: Any, expected: dict[str, torch.Tensor]) -> None:
    """Check a record's weights against the tensors its spec's network holds: the same keys, each a
    tensor of the same shape.

    Raises:
        ValueError: naming the first key that is missing, unexpected, not a tensor or misshapen.
    """
    if not isinstance(state_dict, dict):
        raise ValueError(f"state_dict is a {type(state_dict).__name__}, not a mapping of tensors")
    missing = [key for key in expected if key not in state_dict]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise ValueError(f"state_dict lacks {missing[0]!r}{more}, which the spec's network holds")
    unexpected = [key for key in state_dict if key not in expected]
    if unexpected:
        more = f" (and {len(unexpected) - 1} more)" if len(unexpected) > 1 else ""
        raise ValueError(f"state_dict has {unexpected[0]!r}{more}, which the spec's network does not hold")
    for key, tensor in state_dict.items():
        if not isinstance(tensor, torch.Tensor):
            raise ValueError(f"state_dict[{key!r}] is a {type(tensor).__name__}, not a tensor")
        need = expected[key]
        if tensor.shape != need.shape:
            raise ValueError(
                f"state_dict[{key!r}] has shape {tuple(tensor.shape)}, "
                f"but the spec's network needs {tuple(need.shape)}"
            )
        if (tensor.is_complex(), tensor.is_floating_point()) != (need.is_complex(), need.is_floating_point()):
            raise ValueError(
                f"state_dict[{key!r}] holds {tensor.dtype} values, but the spec's network needs {need.dtype}"
            )


def network_from_record(record: dict[str, Any]) -> nn.Module:
    """The trained network of a saved ``model.pt`` record (its ``spec`` and ``state_dict``), in eval mode.

    Nothing is allocated before the record is checked: the spec (:func:`check_spec`), then the size of
    the network it describes, built on the ``meta`` device (at most
    :data:`smug.models.denoisers.MAX_PARAMETERS` parameters), then the weights' keys and shapes
    against that network's (:func:`check_state_dict`).

    Raises:
        ValueError: naming the offending key of the record.
    """
    missing = [key for key in ("spec", "state_dict") if key not in record]
    if missing:
        raise ValueError(f"not a trained network's record (no state_dict/spec): it has no {missing[0]!r}")
    spec = record["spec"]
    check_spec(spec)
    skeleton = _skeleton(spec)
    size = sum(p.numel() for p in skeleton.parameters())
    if size > MAX_PARAMETERS:
        raise ValueError(f"spec.model asks for {size:,} parameters, beyond the limit of {MAX_PARAMETERS:,}")
    check_state_dict(record["state_dict"], skeleton.state_dict())
    model = build_model(spec["kind"], spec["model"], _smoothing(spec))
    try:
        model.load_state_dict(record["state_dict"])
    except (RuntimeError, NotImplementedError) as exc:  # a value its parameter cannot take
        raise ValueError(f"state_dict does not load into the spec's network: {_first_line(exc)}") from None
    return model.eval()


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def perturbation_generator(spec: dict[str, Any], image_shape: Sequence[int]) -> PerturbationGenerator:
    """The min-max game's generator: 1 channel for image-domain attacks on a magnitude U-Net, 2
    (complex) otherwise."""
    adv = spec["adversarial"]
    complex_out = adv["domain"] == "kspace" or spec["model"]["input_mode"] == "complex"
    return PerturbationGenerator(
        tuple(image_shape),
        latent_dim=adv["latent_dim"],
        out_chans=2 if complex_out else 1,
        features=adv["features"],
        num_upsamples=adv["num_upsamples"],
    )
