"""Checks of a pipeline config beyond its schema, each raising one short message that names the key.

The schema (``workflow/schemas/config.schema.yaml``) checks each key's type, range and spelling;
these check what it cannot: NaN and infinity (JSON Schema's comparisons are false for NaN), entries
that must name other entries of the config, and the claims against what the config evaluates. The
workflow runs them when the DAG is built (``workflow/rules/validation.smk``), so a bad config stops
before any job runs. Plain data: no torch.
"""

from __future__ import annotations

import difflib
import functools
import math
from pathlib import Path
from typing import Any

from smug.study.claims import check_claims
from smug.study.methods import (
    KINDS,
    METHODS,
    pretrained_methods,
    schema_names,
    transfer_section,
    transferred_methods,
)
from smug.utils.yaml_safety import load_yaml_strict

NESTED_CONFIG_HINT = (
    "Nested keys are set in a YAML file passed with --configfile (merged key by key into "
    "config/config.yaml); --config sets top-level keys only, e.g. --config device=cpu."
)


@functools.lru_cache(maxsize=None)
def resolved_schema(schema_path: str) -> dict:
    """The config schema with the registry's names filled in (:func:`smug.study.methods.schema_names`),
    read once (the config and every ablation variant are validated against it; nobody modifies it)."""
    path = Path(schema_path)
    schema = load_yaml_strict(path.read_text(), str(path))
    for name, names in schema_names().items():
        schema["$defs"][name]["enum"] = names
    return schema


def non_finite_number(value: Any, path: str = "") -> tuple[str, float] | None:
    """(key path, value) of the first NaN or infinity in ``value``, or None."""
    if isinstance(value, float) and not math.isfinite(value):
        return path, value
    if isinstance(value, dict):
        items = ((f"{path}.{key}" if path else str(key), item) for key, item in value.items())
    elif isinstance(value, (list, tuple)):
        items = ((f"{path}[{index}]", item) for index, item in enumerate(value))
    else:
        return None
    return next(filter(None, (non_finite_number(item, where) for where, item in items)), None)


def check_finite(config: dict) -> None:
    """NaN and infinity anywhere in the config (a file or --config) are refused, naming the key."""
    found = non_finite_number(config)
    if found is not None:
        raise ValueError(f"config error: config key {found[0]} is {found[1]}: numbers must be finite")


def config_error_message(error: Any) -> str:
    """One line (two with the --config hint) for a jsonschema ``ValidationError``: the key's path,
    what is wrong and the closest valid key or value, instead of jsonschema's dump of the schema."""
    path = ".".join(str(part) for part in error.absolute_path)
    where = path or "the config"
    if error.validator == "additionalProperties":
        allowed = list(error.schema.get("properties", {}))
        unknown = [key for key in error.instance if key not in allowed]
        key = str(unknown[0]) if unknown else "?"
        full = ".".join([*error.absolute_path, key])
        close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
        if close:
            hint = f"did you mean {'.'.join([*error.absolute_path, close[0]])}?"
        else:
            hint = f"valid: {', '.join(allowed)}"
        place = f"in {path}" if path else "at the top level"
        return f"config error: unknown key {full!r} {place} ({hint}). {NESTED_CONFIG_HINT}"
    if error.validator == "enum":
        choices = [str(choice) for choice in error.validator_value]
        close = difflib.get_close_matches(str(error.instance), choices, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]!r}? " if close else ""
        return f"config error: {where}: {error.instance!r} is not allowed; {hint}valid: {', '.join(choices)}"
    if error.validator == "pattern":
        allowed_form = error.schema.get("description", f"the pattern {error.validator_value}")
        return (
            f"config error: {where}: {error.instance!r} is not allowed. {' '.join(str(allowed_form).split())}"
        )
    if error.validator == "type":
        return f"config error: {where}: {error.instance!r} is not of type {error.validator_value!r}"
    return f"config error: {where}: {error.message}"


def used_splits(config: dict) -> list[tuple[str, str]]:
    """(split, anatomy) of every split list the run reads."""
    train = config["data"]["train_anatomy"]
    pairs = [("train", train), ("val", train), ("test", train)]
    if config["data"]["shift_anatomy"]:
        pairs.append(("test", config["data"]["shift_anatomy"]))
    return pairs


def check_shift_anatomy(config: dict) -> None:
    shift = config["data"]["shift_anatomy"]
    if shift == config["data"]["train_anatomy"]:
        raise ValueError(
            f"config error: data.shift_anatomy must differ from data.train_anatomy ({shift!r}), or be null"
        )


def claim_source(claim: Any) -> str:
    """The table a claim reads: ``evaluation`` (the main run), ``ablations`` or ``backbones``."""
    return claim.get("source_table", "evaluation") if isinstance(claim, dict) else "evaluation"


def check_claims_config(config: dict, source: str = "evaluation") -> None:
    """Each claim names models, perturbations, levels and metrics this config evaluates
    (:func:`smug.study.claims.check_claims`), and no id is given twice. The claims on the ablations
    and the backbones (``source_table: ablations``, ``backbones``) are checked only when that target
    is built (``source``), so the main pipeline never depends on their settings."""
    claims = [c for c in config["claims"] if claim_source(c) == source]
    ids = [c.get("id") for c in config["claims"] if isinstance(c, dict)]
    repeated = sorted({i for i in ids if ids.count(i) > 1}, key=str)
    if repeated:
        raise ValueError(f"config error: claims: the id {repeated[0]!r} is given more than once")
    check_claims(claims, config)


def check_config_references(config: dict) -> None:
    """Config lists that name entries of another list must name existing ones: a misspelt or
    unevaluated model in evaluation.figure.models would otherwise leave a finished folder's figures
    stale. The schema checks each name's spelling; this checks what it refers to."""
    evaluation = config["evaluation"]
    models, attacks = evaluation["models"], list(evaluation["attacks"])
    references = {
        "evaluation.figure.models": (evaluation["figure"]["models"], "evaluation.models", models),
        "evaluation.figure.attack": ([evaluation["figure"]["attack"]], "evaluation.attacks", attacks),
    }
    for method in transferred_methods():
        if method in models:
            where = KINDS[METHODS[method].kind].transfer
            names = transfer_section(config, method)["attacks"]
            references[f"{where}.attacks"] = (names, "evaluation.attacks", attacks)
    for key, (names, target, valid) in references.items():
        for name in names:
            if name not in valid:
                raise ValueError(
                    f"config error: {key}: {name!r} is not in {target} (valid: {', '.join(valid)})"
                )


def check_pretrained(config: dict) -> None:
    """Every published-weights method the run evaluates names an existing checkpoint
    (``pretrained.<method>.path``), so a missing file stops the DAG with one line."""
    for method in config["evaluation"]["models"]:
        if method not in pretrained_methods():
            continue
        path = config["pretrained"][method]["path"]
        if path is None:
            raise ValueError(
                f"config error: pretrained.{method}.path is null: name the fastMRI checkpoint to evaluate {method}"
            )
        if not Path(path).is_file():
            raise ValueError(f"config error: pretrained.{method}.path: no such file: {path}")


def check_target_attacks(config: dict, target: str = "ablations") -> None:
    """``ablations.attacks`` or ``backbones.attacks`` must name configured attacks; checked when that
    target is built, so a config that drops attacks from evaluation.attacks still runs the main
    pipeline."""
    for attack in config[target]["attacks"]:
        if attack not in config["evaluation"]["attacks"]:
            raise ValueError(
                f"config error: {target}.attacks: {attack!r} is not in evaluation.attacks "
                f"(valid: {', '.join(config['evaluation']['attacks'])})"
            )
