"""Every method's model: build a trained network from its config spec, and rebuild any method from
its saved ``model.pt`` record (:func:`load_method`), by the family table :data:`FAMILY_MODELS`.

A trained network's record carries its spec and weights, so :func:`load_method` needs nothing but
the file: a reviewer can re-run any evaluation from the checkpoint alone. Tuned compressed sensing,
the untrained network and zero-filled save only their settings, under a top-level ``kind``.
"""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
from torch import nn

from smug.models import classical
from smug.models.denoisers import DENOISERS, MAX_PARAMETERS, build_denoiser, check_arguments, check_setting
from smug.models.diffusion import DiffusionReconstructor
from smug.models.fastmri_checkpoints import PUBLISHED_SIZES, build_fastmri_model
from smug.models.e2e_unet import ZeroFilledUNet
from smug.models.generator import PerturbationGenerator
from smug.models.ista_net import ISTANetPlus
from smug.models.modl import RSE2E, MoDL
from smug.models.varnet import E2EVarNet
from smug.models.untrained import UntrainedNetwork
from smug.models.weight_encoder import WeightEncoder
from smug.models.zero_filled import ZeroFilled
from smug.study import BACKBONES, DENOISER_BACKBONE, KINDS, Kind
from smug.utils import load_torch_file

Builder = Callable[[str, dict[str, Any], dict[str, Any] | None], nn.Module]


def _denoiser(kind: str, model_cfg: dict[str, Any], smoothing_cfg: dict[str, Any] | None) -> nn.Module:
    return build_denoiser(model_cfg["denoiser"], **model_cfg.get("denoiser_args", {}))


def _unet(kind: str, model_cfg: dict[str, Any], smoothing_cfg: dict[str, Any] | None) -> nn.Module:
    return ZeroFilledUNet(**model_cfg)


def _diffusion(kind: str, model_cfg: dict[str, Any], smoothing_cfg: dict[str, Any] | None) -> nn.Module:
    return DiffusionReconstructor(**model_cfg)


# The unrolled backbones beside MoDL (smug.study.methods.BACKBONES), and the keys of their config
# sections a spec's ``backbone_args`` may hold (their sizes; smoothing comes from the kind).
BACKBONE_NETWORKS: dict[str, type[nn.Module]] = {"varnet": E2EVarNet, "ista": ISTANetPlus}
BACKBONE_ARGUMENTS = {
    "varnet": ("num_cascades", "chans", "pools", "sens_chans", "sens_pools", "estimate_sens"),
    "ista": ("num_phases", "num_filters", "step", "threshold", "symmetry_weight"),
}


def _unrolled(kind: str, model_cfg: dict[str, Any], smoothing_cfg: dict[str, Any] | None) -> nn.Module:
    """The kind's unrolled network on the spec's backbone (MoDL around a fresh denoiser unless the
    spec names another), smoothed where the kind's registry entry says."""
    backbone = model_cfg.get("backbone", DENOISER_BACKBONE)
    if backbone == DENOISER_BACKBONE:
        denoiser = _denoiser(kind, model_cfg, smoothing_cfg)

        def network(**smoothing):
            return MoDL(
                denoiser,
                num_unrolls=model_cfg["num_unrolls"],
                lam=model_cfg["lam"],
                learn_lam=model_cfg["learn_lam"],
                lam_floor=model_cfg.get("lam_floor", 0.01),
                cg_max_iter=model_cfg["cg_max_iter"],
                cg_tol=model_cfg["cg_tol"],
                output_bound=model_cfg.get("output_bound"),
                **smoothing,
            )

    else:

        def network(**smoothing):
            return BACKBONE_NETWORKS[backbone](**model_cfg["backbone_args"], **smoothing)

    smoothing = KINDS[kind].smoothing
    if smoothing == "e2e":
        return RSE2E(network(), sigma=smoothing_cfg["kspace_sigma"], num_samples=smoothing_cfg["num_samples"])
    if smoothing is None:
        return network()
    weighting = {}
    if smoothing == "weighted":
        weighting = {
            key: smoothing_cfg[key]
            for key in ("weight_scores", "weight_normalisation")
            if key in smoothing_cfg
        }
        weighting["weight_encoder"] = WeightEncoder(**smoothing_cfg.get("weight_encoder", {}))
    return network(
        smoothing=smoothing,
        sigma=smoothing_cfg["sigma"],
        num_samples=smoothing_cfg["num_samples"],
        **weighting,
    )


def build_model(
    kind: str, model_cfg: dict[str, Any], smoothing_cfg: dict[str, Any] | None = None
) -> nn.Module:
    """A fresh network of ``kind``, built by its family in :data:`smug.study.methods.KINDS`.

    Args:
        kind: one of :data:`MODEL_KINDS`.
        model_cfg: denoiser and unrolled kinds: ``denoiser``, ``denoiser_args``; unrolled kinds also
            ``num_unrolls``, ``lam``, ``learn_lam``, ``lam_floor`` (learned lam only), ``cg_max_iter``,
            ``cg_tol``, ``output_bound`` (absent: unbounded); U-Net kinds: ZeroFilledUNet's arguments;
            the diffusion kind: DiffusionReconstructor's.
        smoothing_cfg: smoothed kinds only (:data:`smug.study.methods.KINDS` lists each one's keys):
            ``sigma``, ``num_samples``, ``weight_encoder`` (kwargs of WeightEncoder), ``weight_scores``
            and ``weight_normalisation`` (Weighted SMUG; absent: MoDL's defaults), and for RS-E2E
            ``kspace_sigma``.
    """
    if kind not in MODEL_KINDS:
        raise ValueError(f"unknown model kind {kind!r}; valid: {', '.join(MODEL_KINDS)}")
    return FAMILY_MODELS[KINDS[kind].family].build(kind, model_cfg, smoothing_cfg)


def unrolled_core(model: nn.Module) -> nn.Module:
    """The unrolled network inside a model (itself, or the network RS-E2E smooths)."""
    return model.modl if isinstance(model, RSE2E) else model


def denoiser_of(model: nn.Module) -> nn.Module:
    """The shared denoiser of a denoiser or a MoDL-based model (the pre-training's network)."""
    return model if not isinstance(model, (MoDL, RSE2E)) else unrolled_core(model).denoiser


def data_consistency_weight(model: nn.Module) -> float | None:
    """The current ``lam`` of a MoDL-based model (None for models without MoDL's data consistency)."""
    core = unrolled_core(model) if isinstance(model, (MoDL, RSE2E)) else None
    return float(core.lam.detach()) if isinstance(core, MoDL) else None


def backbone_of(spec: dict[str, Any]) -> str:
    """The backbone a trained unrolled network's spec names (MoDL's specs name none)."""
    return spec["model"].get("backbone", DENOISER_BACKBONE)


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
    FAMILY_MODELS[entry.family].check_model(spec["model"], entry)
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


def _check_unet_model(model: Any, kind: Kind) -> None:
    check_arguments("spec.model", model, ZeroFilledUNet)


def _check_diffusion_model(model: Any, kind: Kind) -> None:
    check_arguments("spec.model", model, DiffusionReconstructor)


def _check_unrolled_model(model: Any, kind: Kind) -> None:
    """An unrolled network's ``model`` section: MoDL's (:func:`_check_denoiser_model`), or a known
    backbone's name and its sizes."""
    if not isinstance(model, dict) or model.get("backbone", DENOISER_BACKBONE) == DENOISER_BACKBONE:
        _check_denoiser_model(model, kind)
        return
    backbone = model["backbone"]
    if not isinstance(backbone, str) or backbone not in BACKBONE_NETWORKS:
        raise ValueError(f"spec.model.backbone is {backbone!r}, not one of {', '.join(BACKBONES)}")
    unknown = [key for key in model if key not in ("backbone", "backbone_args")]
    if unknown:
        raise ValueError(f"spec.model has {unknown[0]!r}, which the {backbone} backbone does not read")
    if "backbone_args" not in model:
        raise ValueError("spec.model has no 'backbone_args'")
    check_arguments(
        "spec.model.backbone_args",
        model["backbone_args"],
        BACKBONE_NETWORKS[backbone],
        allowed=BACKBONE_ARGUMENTS[backbone],
    )


def _check_denoiser_model(model: Any, kind: Kind) -> None:
    """A denoiser's or an unrolled network's ``model`` section: the kind's keys, a known denoiser and
    that denoiser's own arguments."""
    check_arguments("spec.model", model, MoDL, allowed=kind.model)
    if "denoiser" not in model:
        raise ValueError("spec.model has no 'denoiser'")
    name = model["denoiser"]
    if not isinstance(name, str) or name.lower() not in DENOISERS:
        raise ValueError(f"spec.model.denoiser is {name!r}, not one of {', '.join(sorted(DENOISERS))}")
    check_arguments("spec.model.denoiser_args", model.get("denoiser_args", {}), DENOISERS[name.lower()])


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


class ModelFileError(ValueError):
    """A ``model.pt`` that is no record of a method this pipeline can rebuild: a malformed spec, a
    setting of the wrong type, an unknown key or kind, a size beyond the limits, weights that do not
    fit the spec's network. The message starts with the file's path and names the offending key."""


def _check_settings(record: dict[str, Any], cls: type) -> None:
    """Check the types and sizes of the record's settings that are arguments of ``cls`` (other keys
    are metadata, or its ``from_record``'s to refuse)."""
    arguments = inspect.signature(cls).parameters
    check_arguments("record", {key: value for key, value in record.items() if key in arguments}, cls)


def _classical(record: dict[str, Any]) -> nn.Module:
    _check_settings(record, classical.CompressedSensing)
    if not isinstance(record.get("solver_kwargs", {}), dict):
        raise ValueError(f"record.solver_kwargs is a {type(record['solver_kwargs']).__name__}, not a mapping")
    return classical.from_record(record)


def _untrained(record: dict[str, Any]) -> nn.Module:
    _check_settings(record, UntrainedNetwork)
    return UntrainedNetwork.from_record(record)


def _pretrained(record: dict[str, Any]) -> nn.Module:
    """fastMRI's published weights as ``scripts/import_checkpoint.py`` saved them: the architecture
    and sizes are checked, the network built on the ``meta`` device first, then the weights' keys
    and shapes against it."""
    architecture, sizes = record.get("architecture"), record.get("sizes", {})
    if architecture not in PUBLISHED_SIZES:
        raise ValueError(f"record.architecture is {architecture!r}, not one of {', '.join(PUBLISHED_SIZES)}")
    if not isinstance(sizes, dict):
        raise ValueError(f"record.sizes is a {type(sizes).__name__}, not a mapping")
    for key, value in sizes.items():
        check_setting(f"record.sizes.{key}", value, int if key != "estimate_sens" else bool)
    try:
        with torch.random.fork_rng(devices=[]), torch.device("meta"):
            skeleton = build_fastmri_model(architecture, **sizes)
    except (ValueError, RuntimeError, TypeError) as exc:
        raise ValueError(
            f"record.sizes do not describe a fastMRI {architecture}: {_first_line(exc)}"
        ) from None
    size = sum(p.numel() for p in skeleton.parameters())
    if size > MAX_PARAMETERS:
        raise ValueError(f"record.sizes ask for {size:,} parameters, beyond the limit of {MAX_PARAMETERS:,}")
    if "state_dict" not in record:
        raise ValueError("record has no 'state_dict'")
    check_state_dict(record["state_dict"], skeleton.state_dict())
    model = build_fastmri_model(architecture, **sizes)
    model.load_state_dict(record["state_dict"])
    return model


def read_record(path: str | os.PathLike, device: torch.device | str = "cpu") -> dict:
    """The saved record of a ``model.pt`` (spec, provenance, history and weights), without building
    the model.

    Loaded with ``weights_only=True``: tensors, numbers, strings and containers only, so a crafted
    file can never execute code when it is opened.
    """
    record = load_torch_file(path, device, what="model file")
    if not isinstance(record, dict):
        raise ModelFileError(f"{path}: the file holds a {type(record).__name__}, not a saved model record")
    return record


def record_kind(record: dict[str, Any]) -> str | None:
    """The method kind a record was saved as: its own ``kind``, or its spec's for trained networks
    (whatever it holds: :func:`load_method` checks it)."""
    if "kind" in record:
        return record["kind"]
    spec = record.get("spec")
    return spec.get("kind") if isinstance(spec, dict) else None


def load_method(path: str | os.PathLike, device: torch.device | str = "cpu") -> tuple[nn.Module, dict]:
    """Rebuild any reconstruction method the pipeline saved: trained networks (``scripts/train.py``),
    tuned compressed sensing (``scripts/tune_classical.py``), and the settings of the untrained network
    and the zero-filled reconstruction (``scripts/write_method.py``).

    Returns ``(model in eval mode, saved record)``.

    Raises:
        ModelFileError: the record is not one this pipeline can rebuild; nothing was built (the
            record's structure, types, sizes and weights' shapes are checked first).
        FileNotFoundError, ValueError: no file, or one :func:`smug.utils.io.load_torch_file` refuses.
    """
    record = read_record(path, device)
    kind = record_kind(record)
    if not isinstance(kind, str) or kind not in KINDS:
        raise ModelFileError(f"{path} is not a model saved by this pipeline: {_kind_problem(record)}")
    try:
        model = FAMILY_MODELS[KINDS[kind].family].from_record(record)
    except (ValueError, TypeError) as exc:
        raise ModelFileError(f"{path}: {exc}") from None
    return model.to(device).eval(), record


def _kind_problem(record: dict[str, Any]) -> str:
    """Why a record has no method kind this pipeline knows, naming the key."""
    known = ", ".join(KINDS)
    if "kind" in record:
        return f"kind is {record['kind']!r}, not one of {known}"
    spec = record.get("spec")
    if "spec" not in record:
        return "it has neither a 'kind' nor a 'spec'"
    if not isinstance(spec, dict):
        return f"spec is a {type(spec).__name__}, not a mapping"
    if "kind" not in spec:
        return "spec has no 'kind'"
    return f"spec.kind is {spec['kind']!r}, not one of {known}"


@dataclass(frozen=True)
class FamilyModels:
    """How the models of one family (:data:`smug.study.methods.FAMILIES`) are made.

    Attributes:
        from_record: a saved ``model.pt`` record to its model; it checks the record's structure,
            types and sizes before it builds anything.
        build: a fresh network of a trained kind from its spec's ``model`` and ``smoothing``
            sections; None for a family ``scripts/train.py`` does not train.
        check_model: raises, naming the key, if a spec's ``model`` section is not one of the kind's.
    """

    from_record: Callable[[dict[str, Any]], nn.Module]
    build: Builder | None = None
    check_model: Callable[[Any, Kind], None] | None = None


# One row per family: adding a backbone of a new family adds its row here and in study.FAMILIES.
FAMILY_MODELS: dict[str, FamilyModels] = {
    "denoiser": FamilyModels(network_from_record, _denoiser, _check_denoiser_model),
    "unrolled": FamilyModels(network_from_record, _unrolled, _check_unrolled_model),
    "unet": FamilyModels(network_from_record, _unet, _check_unet_model),
    "classical": FamilyModels(_classical),
    "untrained": FamilyModels(_untrained),
    "zero_filled": FamilyModels(lambda record: ZeroFilled()),
    "pretrained": FamilyModels(_pretrained),
    "diffusion": FamilyModels(network_from_record, _diffusion, _check_diffusion_model),
}
MODEL_KINDS = tuple(name for name, kind in KINDS.items() if FAMILY_MODELS[kind.family].build is not None)
