"""The ablation experiments (``snakemake ablations``): variants of registered methods, from config.

An experiment of ``ablations.experiments`` trains each of its ``methods`` once per entry of its
``variants``: a mapping of dotted config keys to values (``smoothing.sigma: 0.02``), applied to the
run's config before the method's spec is taken (:func:`smug.study.methods.spec_settings`). The pseudo-key
``init`` names the trained method a variant starts from instead of its registry's (null: random
weights). A variant is thus a config value of an existing kind, trained and checked like the main
models; nothing about it is a new script.

A variant's model name is its method and its settings, ``smug@smoothing.sigma=0.02`` (keys sorted,
joined by ``+``). A variant whose spec and starting point equal its method's in the run's own
config *is* that main model (``smug`` for ``smoothing.sigma: 0.01`` in the embedded default), so it
is neither trained nor named twice.

Plain data (no torch): the workflow builds its DAG from these functions.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from smug.study.methods import (
    DENOISER_BACKBONE,
    KINDS,
    METHODS,
    check_backbone,
    spec_settings,
    start_method,
    trained_methods,
)

INIT_KEY = "init"
# The setting that moves a method to another backbone (smug.study.methods.BACKBONES).
BACKBONE_KEY = "model.backbone"
# The roles of an experiment's models: trained for it, or a main model shown beside it.
VARIANT, REFERENCE = "variant", "reference"


@dataclass(frozen=True)
class Variant:
    """A model of an ablation experiment.

    Attributes:
        name: its model name (folder under ``results/models/``): a variant's name, or the main
            model's when its settings are the run's own.
        method: the registered method it is a variant of (for a reference, the model itself).
        settings: the dotted keys and values it changes, sorted (empty for a reference).
        role: :data:`VARIANT` or :data:`REFERENCE`.
    """

    name: str
    method: str
    settings: tuple[tuple[str, Any], ...]
    role: str

    @property
    def label(self) -> str:
        """How tables and figures name it: its settings by their last key (``sigma=0.02``; a stage's
        ``training.epochs.smug`` as ``epochs``), or the method for a reference."""
        if self.role == REFERENCE:
            return self.method
        return (
            ", ".join(f"{_label_key(key)}={format_value(value)}" for key, value in self.settings) or "default"
        )


def _label_key(key: str) -> str:
    *parents, leaf = key.split(".")
    return "epochs" if parents and parents[-1] == "epochs" else leaf


def format_value(value: Any) -> str:
    """A setting's value as model names and labels print it: ``0.0025``, ``1``, ``null``, ``noisy``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return format(value, "g")
    return str(value)


def variant_name(method: str, settings: dict[str, Any]) -> str:
    """``method@key=value+key=value`` with the keys sorted."""
    return method + "@" + "+".join(f"{key}={format_value(settings[key])}" for key in sorted(settings))


def apply_settings(config: dict, settings: dict[str, Any], where: str = "ablations") -> dict:
    """A copy of ``config`` with each dotted key of ``settings`` (but ``init``) set to its value.

    Raises:
        ValueError: a key that is not in the config, naming it and ``where`` it was written.
    """
    changed = copy.deepcopy(config)
    for key, value in settings.items():
        if key == INIT_KEY:
            continue
        *parents, leaf = key.split(".")
        section = changed
        for depth, part in enumerate(parents):
            section = section.get(part) if isinstance(section, dict) else None
            if not isinstance(section, dict):
                raise ValueError(
                    f"config error: {where}: {key!r} is not a config key ({'.'.join(parents[: depth + 1])} is no section)"
                )
        if leaf not in section:
            raise ValueError(f"config error: {where}: {key!r} is not a config key")
        section[leaf] = value
    return changed


def config_backbone(config: dict) -> str:
    """The backbone of the run's own unrolled models (``model.backbone``)."""
    return config["model"].get("backbone", DENOISER_BACKBONE)


def starting_point(method: str, settings: dict[str, Any], config: dict) -> str | None:
    """The trained model a variant starts from: ``settings['init']`` if given, else its method's
    start on the variant's backbone (:func:`smug.study.methods.start_method`); on a backbone other
    than the run's, that start is the same method's variant on that backbone."""
    if INIT_KEY in settings:
        return settings[INIT_KEY]
    backbone = settings.get(BACKBONE_KEY, config_backbone(config))
    start = start_method(method, backbone)
    if start is None or backbone == config_backbone(config):
        return start
    return variant_name(start, {BACKBONE_KEY: backbone})


def _setup(method: str, settings: dict[str, Any], config: dict) -> tuple[dict, str | None]:
    return spec_settings(method, apply_settings(config, settings)), starting_point(method, settings, config)


def _models(entry: dict, config: dict, where: str) -> list[Variant]:
    """An experiment's variants (in the order of ``methods``, then ``variants``), then its references."""
    models = []
    for method in entry["methods"]:
        base = _setup(method, {}, config)
        for index, settings in enumerate(entry["variants"]):
            _check_variant(method, settings, f"{where}.variants[{index}]")
            same = _setup(method, settings, config) == base
            name = method if same else variant_name(method, settings)
            models.append(Variant(name, method, tuple(sorted(settings.items())), VARIANT))
    return models + [Variant(name, name, (), REFERENCE) for name in entry["references"]]


def experiment_models(config: dict) -> dict[str, list[Variant]]:
    """Every experiment's models, variants first (in the order of ``methods``, then ``variants``),
    then its references."""
    return {
        experiment: _models(entry, config, f"ablations.experiments.{experiment}")
        for experiment, entry in config["ablations"]["experiments"].items()
    }


def backbone_models(config: dict) -> list[Variant]:
    """The models of ``snakemake backbones``: every method of ``backbones.methods`` on the run's own
    backbone (its main model) and on each of ``backbones.backbones``, method by method, then the
    ``backbones.baselines`` (role :data:`REFERENCE`: main models with no backbone). A backbone's
    models take its ``backbones.settings`` (the recipe's departures it needs) and are named by the
    backbone alone, ``smug@model.backbone=varnet``."""
    section = config.get("backbones")
    if not section:
        return []
    own = config_backbone(config)
    departures = section.get("settings") or {}
    if own in departures:
        raise ValueError(
            f"config error: backbones.settings.{own}: the {own} backbone's models are the main ones; "
            "set those keys in the config itself"
        )
    models = []
    for method in section["methods"]:
        for backbone in dict.fromkeys([own, *section["backbones"]]):
            if backbone == own:
                models.append(Variant(method, method, ((BACKBONE_KEY, own),), VARIANT))
                continue
            where = f"backbones ({method} on {backbone})"
            read = _departures_read(method, backbone, departures.get(backbone, {}), config, where)
            settings = {BACKBONE_KEY: backbone, **read}
            _check_variant(method, settings, where)
            name = variant_name(method, {BACKBONE_KEY: backbone})
            models.append(Variant(name, method, tuple(sorted(settings.items())), VARIANT))
    # The baselines with no backbone (the diffusion prior) are the run's own models, shown beside.
    models += [Variant(method, method, (), REFERENCE) for method in section.get("baselines") or []]
    return models


def _departures_read(
    method: str, backbone: str, departures: dict[str, Any], config: dict, where: str
) -> dict[str, Any]:
    """The departures of ``backbone`` that ``method``'s model reads: those that change its spec
    (vanilla MoDL reads neither SMUG's epochs nor its ``lambda_rec``), so its settings, its label and
    its starting point name nothing it ignores."""
    on_backbone = apply_settings(config, {BACKBONE_KEY: backbone}, where)
    spec = spec_settings(method, on_backbone)
    return {
        key: value
        for key, value in departures.items()
        if spec_settings(method, apply_settings(on_backbone, {key: value}, f"backbones.settings.{backbone}"))
        != spec
    }


def variant_models(config: dict) -> dict[str, Variant]:
    """The models the experiments and the backbones train beyond the main ones, by name, with the
    vanilla network each backbone's methods start from."""
    models = [*(m for ms in experiment_models(config).values() for m in ms), *backbone_models(config)]
    variants: dict[str, Variant] = {}
    for model in models:
        if model.role != VARIANT or model.name == model.method:
            continue
        earlier = variants.setdefault(model.name, model)
        if _setup(earlier.method, dict(earlier.settings), config) != _setup(
            model.method, dict(model.settings), config
        ):
            raise ValueError(
                f"config error: {model.name} is named twice with different settings "
                f"({_settings_text(earlier)} and {_settings_text(model)}): an ablation variant on a backbone "
                "takes that backbone's backbones.settings too"
            )
    for variant in list(variants.values()):
        start = starting_point(variant.method, dict(variant.settings), config)
        if start is not None and start not in METHODS and start not in variants:
            backbone = dict(variant.settings)[BACKBONE_KEY]
            variants[start] = Variant(start, "modl", ((BACKBONE_KEY, backbone),), VARIANT)
    return variants


def _settings_text(model: Variant) -> str:
    return ", ".join(f"{key}={format_value(value)}" for key, value in model.settings)


def model_setup(
    name: str, config: dict, variants: dict[str, Variant] | None = None
) -> tuple[str, dict, str | None]:
    """``(method, config, init)`` of a trained model: a registered method with the run's config and
    its registry's starting point, or a variant with its settings applied.

    ``variants``: :func:`variant_models` of ``config``, if already computed.
    """
    variants = variant_models(config) if variants is None else variants
    if name in variants:
        variant = variants[name]
        settings = dict(variant.settings)
        return (
            variant.method,
            apply_settings(config, settings),
            starting_point(variant.method, settings, config),
        )
    return name, config, start_method(name, config_backbone(config))


def _check_variant(method: str, settings: dict[str, Any], where: str) -> None:
    if method not in trained_methods():
        raise ValueError(
            f"config error: {where}: {method!r} is not a trained method ({', '.join(trained_methods())})"
        )
    if not settings:
        raise ValueError(f"config error: {where}: a variant sets at least one key")
    if BACKBONE_KEY in settings:
        check_backbone(method, settings[BACKBONE_KEY], f"{where}: {BACKBONE_KEY}")
        if settings[BACKBONE_KEY] != DENOISER_BACKBONE and settings.get(INIT_KEY) is not None:
            raise ValueError(
                f"config error: {where}: a method on the {settings[BACKBONE_KEY]} backbone starts from "
                "its backbone's vanilla network; its init may only be null"
            )
    if INIT_KEY in settings:
        init = settings[INIT_KEY]
        kind = KINDS[METHODS[method].kind]
        if kind.family != "unrolled":
            raise ValueError(f"config error: {where}: init applies to unrolled methods, not {method!r}")
        if kind.smoothing == "e2e":
            raise ValueError(
                f"config error: {where}: {method!r} smooths the trained MoDL it starts from; its init is fixed"
            )
        if init is not None and (init not in trained_methods() or init == method):
            others = [m for m in trained_methods() if m != method]
            raise ValueError(
                f"config error: {where}: init {init!r} is not a trained method ({', '.join(others)}) or null"
            )
