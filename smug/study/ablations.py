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

from smug.study.methods import KINDS, METHODS, spec_settings, trained_methods

INIT_KEY = "init"
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
        """How tables and figures name it: its settings by their last key (``sigma=0.02``), or the
        method for a reference."""
        if self.role == REFERENCE:
            return self.method
        return (
            ", ".join(f"{key.rsplit('.', 1)[-1]}={format_value(value)}" for key, value in self.settings)
            or "default"
        )


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


def starting_point(method: str, settings: dict[str, Any]) -> str | None:
    """The trained method a variant starts from: ``settings['init']`` if given, else the registry's."""
    return settings[INIT_KEY] if INIT_KEY in settings else METHODS[method].init


def _setup(method: str, settings: dict[str, Any], config: dict) -> tuple[dict, str | None]:
    return spec_settings(method, apply_settings(config, settings)), starting_point(method, settings)


def experiment_models(config: dict) -> dict[str, list[Variant]]:
    """Every experiment's models, variants first (in the order of ``methods``, then ``variants``),
    then its references."""
    experiments = {}
    for experiment, entry in config["ablations"]["experiments"].items():
        models = []
        for method in entry["methods"]:
            base = _setup(method, {}, config)
            for index, settings in enumerate(entry["variants"]):
                where = f"ablations.experiments.{experiment}.variants[{index}]"
                _check_variant(method, settings, where)
                same = _setup(method, settings, config) == base
                name = method if same else variant_name(method, settings)
                models.append(Variant(name, method, tuple(sorted(settings.items())), VARIANT))
        models += [Variant(name, name, (), REFERENCE) for name in entry["references"]]
        experiments[experiment] = models
    return experiments


def variant_models(config: dict) -> dict[str, Variant]:
    """The models the experiments train beyond the main ones, by name."""
    return {
        model.name: model
        for models in experiment_models(config).values()
        for model in models
        if model.role == VARIANT and model.name != model.method
    }


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
        return variant.method, apply_settings(config, settings), starting_point(variant.method, settings)
    return name, config, METHODS[name].init


def _check_variant(method: str, settings: dict[str, Any], where: str) -> None:
    if method not in trained_methods():
        raise ValueError(
            f"config error: {where}: {method!r} is not a trained method ({', '.join(trained_methods())})"
        )
    if not settings:
        raise ValueError(f"config error: {where}: a variant sets at least one key")
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
