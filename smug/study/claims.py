"""The three studies' claims as data, each tested with an interval over seeds and volumes.

A claim is one entry of the config's ``claims:`` list: the study's wording, the models and the
conditions it reads, a metric, the claimed ``direction`` (``greater`` or ``less``) and a
``threshold`` (0 unless the claim is "not worse by more than ...", written as greater than a
declared negative threshold in its statement). Its *kind* says which score tables it reads and
which statistic of them is the effect; :func:`claim_kinds` is the one table of kinds, so a reviewer
adds a claim with a config entry and a kind with one entry there.

Claims are checked against the config when the DAG is built (:func:`check_claims`), so a misspelt
model, a perturbation the config does not evaluate or an eps not on its grid stops the run with one
line naming the claim and the key, instead of a missing score at the end of the run. Measuring a
claim (score tables, intervals, verdicts) is :mod:`smug.evaluation.claims`; its README section is
:mod:`smug.reporting.claims`.

Only numpy at import: the workflow imports this module to check the config.
"""

from __future__ import annotations

import math
import re
from typing import Any, Iterable


from smug.study.attacks import NOISE_COUNTERPART
from smug.study.methods import DENOISER_BACKBONE, takes_unrolls, transfer_section
from smug.study.claim_types import Condition, claim_kinds

# Metrics of every condition, and those scored only where small features are inserted.
IMAGE_METRICS = ("NMSE", "PSNR", "SSIM")
FEATURE_METRICS = ("feature_error", "feature_detected")

SOURCE_TABLES = ("evaluation", "ablations", "backbones")
DIRECTIONS = ("greater", "less")


# Fields of every claim; ``threshold`` defaults to 0, ``source_table`` to evaluation.
COMMON_FIELDS = ("id", "source", "statement", "kind", "metric", "direction")
OPTIONAL_FIELDS = ("threshold", "source_table", "experiment", "each")
# The kinds whose ``a`` and ``b`` may be compared pair by pair (``each: true``).
EACH_KINDS = ("difference", "drop_difference")
_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


# ---- the score tables ---------------------------------------------------------------------------


def same_level(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


# ---- paired comparisons -------------------------------------------------------------------------


# ---- the kinds of claims ------------------------------------------------------------------------


# ---- checking claims ------------------------------------------------------------------------------


def _error(where: str, key: str, message: str) -> ValueError:
    return ValueError(f"config error: {where}.{key}: {message}")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_model_list(value: Any, where: str, key: str, minimum: int, allow_one: bool) -> None:
    if allow_one and isinstance(value, str) and value:
        return
    if not isinstance(value, list) or not all(isinstance(m, str) and m for m in value):
        what = "a model or a list of models" if allow_one else "a list of models"
        raise _error(where, key, f"{value!r} is not {what}")
    if len(value) < minimum:
        raise _error(where, key, f"lists {len(value)} model(s); this kind needs at least {minimum}")
    if len(set(value)) != len(value):
        raise _error(where, key, f"lists a model twice: {value}")


def _check_condition_spec(spec: Any, where: str, key: str) -> None:
    if not isinstance(spec, dict):
        raise _error(where, key, f"{spec!r} is not a mapping of perturbation, level and metric")
    unknown = [k for k in spec if k not in ("perturbation", "level", "metric")]
    if unknown:
        raise _error(where, f"{key}.{unknown[0]}", "unknown key (valid: perturbation, level, metric)")
    if not isinstance(spec.get("perturbation"), str) or not spec["perturbation"]:
        raise _error(where, f"{key}.perturbation", "missing, or not a perturbation name")
    if spec.get("level") is not None and not _is_number(spec["level"]):
        raise _error(where, f"{key}.level", f"{spec['level']!r} is not a number (or null: the only level)")
    if "metric" in spec:
        _check_metric(spec["metric"], where, f"{key}.metric")


def _check_metric(metric: Any, where: str, key: str) -> None:
    if metric not in IMAGE_METRICS + FEATURE_METRICS:
        raise _error(
            where, key, f"{metric!r} is not a metric (valid: {', '.join(IMAGE_METRICS + FEATURE_METRICS)})"
        )


def _check_each(claim: dict, where: str) -> None:
    """``each: true`` pairs ``a`` and ``b`` model by model: two lists of the same length."""
    if not isinstance(claim["each"], bool):
        raise _error(where, "each", f"{claim['each']!r} is not true or false")
    if not claim["each"]:
        return
    if claim["kind"] not in EACH_KINDS:
        raise _error(where, "each", f"applies to {' and '.join(EACH_KINDS)} claims, not {claim['kind']}")
    a, b = claim.get("a"), claim.get("b")
    if not (isinstance(a, list) and isinstance(b, list) and len(a) == len(b) >= 2):
        raise _error(
            where, "each", "pairs a and b model by model: both must be lists of the same length (>= 2)"
        )


def _claim_place(claim: Any, index: int) -> str:
    name = claim.get("id") if isinstance(claim, dict) else None
    return f"claims[{name}]" if isinstance(name, str) and _ID.match(name) else f"claims[{index}]"


def validate_claims(claims: Any) -> list[dict]:
    """The claims' own structure, without a config: a list of mappings, each with its fields, a
    unique id, a known kind, metric and direction, a finite threshold, and its kind's fields of the
    right types. Returns the claims; raises ValueError with one line naming the claim and the key."""
    if not isinstance(claims, list):
        raise ValueError(f"config error: claims: expected a list of claims, got {type(claims).__name__}")
    kinds = claim_kinds()
    seen: dict[str, int] = {}
    for index, claim in enumerate(claims):
        where = _claim_place(claim, index)
        if not isinstance(claim, dict):
            raise ValueError(f"config error: {where}: expected a mapping, got {type(claim).__name__}")
        for key in COMMON_FIELDS:
            if key not in claim:
                raise _error(where, key, "missing (every claim has " + ", ".join(COMMON_FIELDS) + ")")
        if not isinstance(claim["id"], str) or not _ID.match(claim["id"]):
            raise _error(where, "id", f"{claim['id']!r} is not a name (letters, digits, '_', '.', '-')")
        if claim["id"] in seen:
            raise _error(where, "id", f"duplicate id (claims[{seen[claim['id']]}] has it too)")
        seen[claim["id"]] = index
        for key in ("source", "statement"):
            if not isinstance(claim[key], str) or not claim[key].strip():
                raise _error(where, key, "must be a non-empty text")
        kind = kinds.get(claim["kind"]) if isinstance(claim["kind"], str) else None
        if kind is None:
            raise _error(where, "kind", f"{claim['kind']!r} is not a claim kind (valid: {', '.join(kinds)})")
        if claim["direction"] not in DIRECTIONS:
            raise _error(where, "direction", f"{claim['direction']!r} is not greater or less")
        if "threshold" in claim and not _is_number(claim["threshold"]):
            raise _error(where, "threshold", f"{claim['threshold']!r} is not a finite number")
        if claim.get("source_table", "evaluation") not in SOURCE_TABLES:
            raise _error(
                where, "source_table", f"{claim['source_table']!r} is not {' or '.join(SOURCE_TABLES)}"
            )
        if "experiment" in claim and claim.get("source_table") != "ablations":
            raise _error(
                where, "experiment", "names an ablation experiment: only with source_table: ablations"
            )
        _check_metric(claim["metric"], where, "metric")
        if "each" in claim:
            _check_each(claim, where)
        known = (*COMMON_FIELDS, *OPTIONAL_FIELDS, *kind.fields)
        unknown = [key for key in claim if key not in known]
        if unknown:
            raise _error(
                where, str(unknown[0]), f"unknown key for a {claim['kind']} claim (valid: {', '.join(known)})"
            )
        for key, kind_of in kind.fields.items():
            if key not in claim:
                if key in kind.optional:
                    continue
                raise _error(where, key, f"missing (a {claim['kind']} claim needs {', '.join(kind.fields)})")
            value = claim[key]
            if kind_of in ("group", "models"):
                _check_model_list(value, where, key, kind.min_models, allow_one=kind_of == "group")
            elif kind_of == "perturbation" and (not isinstance(value, str) or not value):
                raise _error(where, key, f"{value!r} is not a perturbation name")
            elif kind_of == "level" and value is not None and not _is_number(value):
                raise _error(where, key, f"{value!r} is not a number (or null: the only level)")
            elif kind_of == "condition":
                _check_condition_spec(value, where, key)
    return claims


def evaluated_conditions(config: dict) -> dict[str, dict[str, tuple[float, ...]]]:
    """Model -> perturbation -> levels: every score the config's evaluation writes (as
    ``workflow/rules/common.smk`` and :func:`smug.evaluation.robustness.evaluate_model` make them).

    Clean; each configured attack at its eps grid, for the models it names (all without
    ``models``), with its random-noise counterpart at every grid of that noise; for a model no
    gradient reaches only its transfer section's ``attacks`` (transferred) and their noise; for the
    untrained network no generator, and ``acceleration`` only with ``untrained.sampling_shift``; the min-max generators (level 1); ``acceleration`` at the
    training and evaluation accelerations; ``unrolls`` for the
    unrolled networks; ``anatomy_shift`` with a shift anatomy, ``ttt_anatomy_shift`` for the
    adapted models; ``small_feature`` at the feature size when configured.
    """
    evaluation, masks = config["evaluation"], config["masks"]
    attacks = evaluation["attacks"]
    noise_levels: dict[str, set[float]] = {}
    for name, entry in attacks.items():
        noise_levels.setdefault(NOISE_COUNTERPART[name], set()).update(float(e) for e in entry["eps"])
    shift = config["data"]["shift_anatomy"]
    accelerations = sorted({masks["acceleration"], *masks["eval_accelerations"]})
    ttt = evaluation["ttt"]["models"] if shift else []
    features = evaluation.get("small_features")
    out = {}
    for model in evaluation["models"]:
        conditions: dict[str, tuple[float, ...]] = {"clean": (0.0,)}
        section = transfer_section(config, model)
        for name, entry in attacks.items():
            chosen = entry.get("models") is None or model in entry["models"]
            if section is not None:
                chosen = name in section["attacks"]
            if chosen:
                conditions[name] = tuple(float(e) for e in entry["eps"])
                noise = NOISE_COUNTERPART[name]
                conditions[noise] = tuple(sorted(noise_levels[noise]))
        if model != "untrained":
            for generator in evaluation["generators"]:
                conditions[f"generator_{generator}"] = (1.0,)
        if model != "untrained" or config["untrained"]["sampling_shift"]:
            conditions["acceleration"] = tuple(float(a) for a in accelerations)
        # Only MoDL's unrolls share one regulariser, so only MoDL-based models take another count.
        shares_unrolls = config["model"].get("backbone", DENOISER_BACKBONE) == DENOISER_BACKBONE
        if takes_unrolls(model) and shares_unrolls and evaluation["unrolls"]:
            conditions["unrolls"] = tuple(float(n) for n in evaluation["unrolls"])
        if shift:
            conditions["anatomy_shift"] = (0.0,)
        if model in ttt:
            conditions["ttt_anatomy_shift"] = (0.0,)
        if features is not None:
            conditions["small_feature"] = (float(features["size"]),)
        out[model] = conditions
    return out


def ablation_conditions(
    config: dict, experiment: str | None = None
) -> dict[str, dict[str, tuple[float, ...]]]:
    """Model -> perturbation -> levels of the ablation experiments' scores (of ``experiment``
    only, when given): clean, and ``ablations.attacks`` at their eps grids for every model but the
    untrained network (scored clean only)."""
    from smug.study.ablations import experiment_models

    experiments = experiment_models(config)
    chosen = experiments if experiment is None else {experiment: experiments[experiment]}
    attacks = config["evaluation"]["attacks"]
    out = {}
    for models in chosen.values():
        for model in models:
            conditions: dict[str, tuple[float, ...]] = {"clean": (0.0,)}
            if model.name != "untrained":
                for name in config["ablations"]["attacks"]:
                    if name in attacks:
                        conditions[name] = tuple(float(e) for e in attacks[name]["eps"])
            out[model.name] = conditions
    return out


def backbone_conditions(config: dict) -> dict[str, dict[str, tuple[float, ...]]]:
    """Model -> perturbation -> levels of the backbones' scores (``snakemake backbones``): clean, and
    ``backbones.attacks`` at their eps grids, for every model of every backbone; a baseline no
    gradient reaches is scored under them transferred, and under their random noise at its levels
    (:func:`smug.study.plan.backbone_perturbations`)."""
    from smug.study.ablations import backbone_models
    from smug.study.plan import backbone_perturbations, noise_eps

    attacks = config["evaluation"]["attacks"]
    out = {}
    for model in backbone_models(config):
        conditions = {"clean": (0.0,)}
        for folder, name in backbone_perturbations(config, model.name):
            if name in attacks:
                conditions[name] = tuple(float(e) for e in attacks[name]["eps"])
            elif folder == "noise":
                conditions[name] = tuple(float(e) for e in noise_eps(config, name))
        out[model.name] = conditions
    return out


def _format_levels(levels: Iterable[float]) -> str:
    return ", ".join(f"{x:g}" for x in levels)


def _check_against(
    condition: Condition, universe: dict, where: str, scope: tuple[str, str], claim_kind: str
) -> None:
    """One condition of a claim against what the config scores; ``scope``: what the model must be,
    and the name of the list it must be in."""
    if condition.model not in universe:
        raise _error(
            where,
            condition.model_key,
            f"{condition.model!r} is not {scope[0]} ({scope[1]}: {', '.join(universe)})",
        )
    evaluated = universe[condition.model]
    fixed = condition.where is None
    key = condition.model_key if fixed else f"{condition.where}perturbation"
    if condition.perturbation not in evaluated:
        reads = f", which a {claim_kind} claim reads" if fixed else ""
        raise _error(
            where,
            key,
            f"{condition.model!r} is not evaluated under {condition.perturbation!r}{reads} by this config "
            f"(its perturbations: {', '.join(evaluated)})",
        )
    levels = evaluated[condition.perturbation]
    if condition.level is None:
        if len(levels) != 1:
            raise _error(
                where,
                f"{condition.where}level",
                f"null takes the only level, but {condition.perturbation} has levels {_format_levels(levels)}",
            )
    elif not any(same_level(condition.level, x) for x in levels):
        raise _error(
            where,
            f"{condition.where}level",
            f"{condition.level:g} is not a level of {condition.perturbation} evaluated for {condition.model!r} "
            f"(levels: {_format_levels(levels)})",
        )
    if condition.metric in FEATURE_METRICS and condition.perturbation != "small_feature":
        metric_key = "metric" if fixed else f"{condition.where}metric"
        raise _error(
            where,
            metric_key,
            f"{condition.metric!r} is scored only under small_feature, not {condition.perturbation}",
        )


def check_claims(claims: Any, config: dict) -> None:
    """Every claim checked against ``config`` when the DAG is built, so a claim about a model, a
    perturbation, a level or a metric the run does not score stops it at once, with one line naming
    the claim's id and the key (``config error: claims[smug_robust_journal].a: 'smugg' is not an
    evaluated model (...)``), instead of a missing score after hours of training.

    Claims of ``source_table: ablations`` are checked against the ablation experiments (their
    ``experiment`` when given) and what those are scored under, those of ``source_table:
    backbones`` against :func:`backbone_conditions`; the others against :func:`evaluated_conditions`.

    Raises:
        ValueError: the first problem found, on one line.
    """
    validate_claims(claims)
    kinds = claim_kinds()
    evaluated = evaluated_conditions(config)
    for index, claim in enumerate(claims):
        where = _claim_place(claim, index)
        kind = kinds[claim["kind"]]
        if claim.get("source_table") == "backbones":
            universe = backbone_conditions(config)
            scope = ("a model of the backbones", "backbones.methods on each of backbones.backbones")
        elif claim.get("source_table", "evaluation") == "ablations":
            experiments = list(config["ablations"]["experiments"])
            experiment = claim.get("experiment")
            if experiment is not None and experiment not in experiments:
                raise _error(
                    where,
                    "experiment",
                    f"{experiment!r} is not an ablation experiment (valid: {', '.join(experiments)})",
                )
            universe = ablation_conditions(config, experiment)
            if experiment is None:
                scope = ("a model of the ablation experiments", "their models")
            else:
                scope = (f"a model of the ablation experiment {experiment!r}", "its models")
        else:
            universe, scope = evaluated, ("an evaluated model", "evaluation.models")
        for condition in kind.conditions(claim):
            _check_against(condition, universe, where, scope, claim["kind"])


# ---- evaluating claims ----------------------------------------------------------------------------


# ---- the README section ---------------------------------------------------------------------------
