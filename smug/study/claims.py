"""The three studies' claims as data, each tested with an interval over seeds and volumes.

A claim is one entry of the config's ``claims:`` list: the study's wording, the models and the
conditions it reads, a metric, the claimed ``direction`` (``greater`` or ``less``) and a
``threshold`` (0 unless the claim is "not worse by more than ...", written as greater than a
declared negative threshold in its statement). Its *kind* says which score tables it reads and
which statistic of them is the effect; :func:`claim_kinds` is the one table of kinds, so a reviewer
adds a claim with a config entry and a kind with one entry there.

Every score is measured on a crossed design (each training seed's model on the same test volumes),
so each condition is a ``(seeds, volumes)`` table (:func:`score_tables`) and each effect gets the
crossed jackknife interval of :mod:`smug.evaluation.statistics`, whose verdict is ``supported`` when the
interval lies wholly on the claimed side of the threshold, ``contradicted`` when wholly on the
other, else ``inconclusive``. In- and out-of-distribution conditions are scored on different
volumes (the shift anatomy's), and each table is told its volume set.

Claims are checked against the config when the DAG is built (:func:`check_claims`), so a misspelt
model, a perturbation the config does not evaluate or an eps not on its grid stops the run with one
line naming the claim and the key, instead of a missing score at the end of the run.

Besides the claims, :func:`comparisons` lists the paired differences the design can decide (every
method against MoDL, SMUG against every other unrolled network, under every shared condition).

Only pandas and numpy at import (the workflow imports this module to check the config); scipy
comes with :mod:`smug.evaluation.statistics` when an interval is computed.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from smug.study.methods import NOISE_COUNTERPART, method_family

# The per-volume rows of every seed: smug.evaluation.scoring.ROW_COLUMNS (a test holds them equal), written
# out so that building the DAG, which checks the claims, never imports torch.
SCORE_COLUMNS = ["model", "perturbation", "level", "metric", "seed", "volume", "value", "n_slices"]
KEY_COLUMNS = ["model", "perturbation", "level", "metric"]

# Conditions scored on the shift anatomy's test volumes; every other one on the training anatomy's.
SHIFT_PERTURBATIONS = ("anatomy_shift", "ttt_anatomy_shift")
TEST_VOLUMES, SHIFT_VOLUMES = "test", "shift"

# Metrics of every condition, and those scored only where small features are inserted.
IMAGE_METRICS = ("NMSE", "PSNR", "SSIM")
FEATURE_METRICS = ("feature_error", "feature_detected")

SOURCE_TABLES = ("evaluation", "ablations")
DIRECTIONS = ("greater", "less")
NOT_RUN = "not run"

CLAIM_COLUMNS = [
    "id",
    "source",
    "statement",
    "kind",
    "conditions",
    "metric",
    "direction",
    "threshold",
    "effect",
    "ci_low",
    "ci_high",
    "half_width",
    "n_seeds",
    "n_volumes",
    "verdict",
    "note",
]
COMPARISON_COLUMNS = [
    "a",
    "b",
    "perturbation",
    "level",
    "metric",
    "mean_a",
    "mean_b",
    "effect",
    "ci_low",
    "ci_high",
    "half_width",
    "decided",
    "n_seeds",
    "n_volumes",
]

# Fields of every claim; ``threshold`` defaults to 0, ``source_table`` to evaluation.
COMMON_FIELDS = ("id", "source", "statement", "kind", "metric", "direction")
OPTIONAL_FIELDS = ("threshold", "source_table", "experiment")
_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


# ---- the score tables ---------------------------------------------------------------------------


def check_scores(scores: pd.DataFrame, what: str = "scores") -> pd.DataFrame:
    """``scores`` with its columns checked and ``level`` as float: the columns of
    :data:`SCORE_COLUMNS` (``n_slices`` may be absent), no missing value and no duplicate row of
    one (model, perturbation, level, metric, seed, volume), which a pivot would silently average."""
    required = [c for c in SCORE_COLUMNS if c != "n_slices"]
    missing = [c for c in required if c not in scores.columns]
    if missing:
        raise ValueError(f"{what} lack column(s) {', '.join(missing)} (expected {', '.join(SCORE_COLUMNS)})")
    if scores.empty:
        raise ValueError(f"{what} hold no rows")
    if scores[required].isna().any().any():
        bad = scores[scores[required].isna().any(axis=1)].iloc[0]
        raise ValueError(f"{what}: a row has a missing value: {bad[required].to_dict()}")
    scores = scores.assign(level=scores["level"].astype(float))
    duplicated = scores.duplicated(subset=[*KEY_COLUMNS, "seed", "volume"], keep=False)
    if duplicated.any():
        row = scores[duplicated].iloc[0]
        raise ValueError(
            f"{what}: {row['model']} under {row['perturbation']} {row['level']:g} ({row['metric']}) is scored "
            f"twice for seed {row['seed']} on volume {row['volume']}"
        )
    return scores


@dataclass(frozen=True)
class ScoreTable:
    """One condition's scores: ``values[i, j]`` of seed ``seeds[i]`` on volume ``volumes[j]``."""

    values: np.ndarray
    seeds: tuple
    volumes: tuple


def _same_level(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def _label(model: str, perturbation: str, level: float | None, metric: str) -> str:
    where = perturbation if level is None else f"{perturbation} {level:g}"
    return f"{model} under {where} ({metric})"


def _score_table(
    scores: pd.DataFrame, model: str, perturbation: str, level: float | None, metric: str
) -> tuple[ScoreTable, float]:
    """The ``(seeds, volumes)`` table of one condition and its level (``level`` None: the only
    level the scores hold for it)."""
    part = scores[
        (scores["model"] == model) & (scores["perturbation"] == perturbation) & (scores["metric"] == metric)
    ]
    levels = sorted(set(part["level"]))
    if level is None:
        if len(levels) != 1:
            found = ", ".join(f"{x:g}" for x in levels) or "none"
            raise ValueError(
                f"no single level of {_label(model, perturbation, None, metric)} (levels: {found})"
            )
        level = levels[0]
    else:
        part = part[[_same_level(x, level) for x in part["level"]]]
    if part.empty:
        found = ", ".join(f"{x:g}" for x in levels)
        hint = f" (its levels: {found})" if found else ""
        raise ValueError(f"no scores of {_label(model, perturbation, level, metric)}{hint}")
    wide = part.pivot(index="seed", columns="volume", values="value")
    wide = wide.sort_index(axis=0).sort_index(axis=1)
    if wide.isna().any().any():
        seed = wide.index[wide.isna().any(axis=1)][0]
        lacking = [str(v) for v in wide.columns[wide.loc[seed].isna()]]
        raise ValueError(
            f"incomplete scores of {_label(model, perturbation, level, metric)}: seed {seed} lacks "
            f"volume(s) {', '.join(lacking)} that other seeds have"
        )
    table = ScoreTable(wide.to_numpy(dtype=float), tuple(wide.index), tuple(wide.columns))
    return table, float(level)


def score_tables(
    scores: pd.DataFrame, model: str, perturbation: str, level: float | None, metric: str
) -> np.ndarray:
    """The ``(seeds, volumes)`` table of one condition, seeds and volumes sorted.

    Each training seed's model is scored on the same volumes (a crossed design): a seed lacking a
    volume would pair scores of different volumes, so it is an error, as is a missing condition.
    ``level`` None takes the condition's only level (clean, a shift, the small-feature size).

    Raises:
        ValueError: naming the model, perturbation, level and metric, and the seed and volumes
            missing.
    """
    return _score_table(check_scores(scores), model, perturbation, level, metric)[0].values


# ---- paired comparisons -------------------------------------------------------------------------


def comparison_pairs(models: Iterable[str]) -> list[tuple[str, str]]:
    """The pairs the comparisons table holds, among ``models`` (those present): every method against
    MoDL (the unrolled baseline every study compares with), then SMUG against every other unrolled
    network (:func:`smug.study.methods.method_family`); each pair once, in the order of ``models``."""
    present = list(dict.fromkeys(models))
    pairs: list[tuple[str, str]] = []
    if "modl" in present:
        pairs += [(m, "modl") for m in present if m != "modl"]
    if "smug" in present:
        pairs += [("smug", m) for m in present if m != "smug" and method_family(m) == "unrolled"]
    unique: list[tuple[str, str]] = []
    for a, b in pairs:
        if (a, b) not in unique and (b, a) not in unique:
            unique.append((a, b))
    return unique


def comparisons(scores: pd.DataFrame, pairs: Sequence[tuple[str, str]]) -> pd.DataFrame:
    """The paired difference ``a - b`` of each pair under every (perturbation, level, metric) both
    are scored under: the same seed's and the same volume's scores subtracted, then the mean of the
    ``(seeds, volumes)`` differences with its crossed interval (:func:`smug.evaluation.statistics.mean_interval`).

    ``decided`` says the interval excludes 0 with at least two seeds (with one, the interval leaves
    the training noise out and decides nothing, as :func:`smug.evaluation.statistics.verdict` has it);
    ``half_width`` is about the smallest difference this run could have decided.

    Raises:
        ValueError: a pair whose seeds or volumes differ under one condition (not a crossed design).
    """
    from smug.evaluation.statistics import mean_interval

    scores = check_scores(scores)
    by_model = dict(tuple(scores.groupby("model", sort=False)))
    keys = {
        model: set(group[["perturbation", "level", "metric"]].itertuples(index=False, name=None))
        for model, group in by_model.items()
    }
    rows = []
    for a, b in pairs:
        shared = keys.get(a, set()) & keys.get(b, set())
        for perturbation, level, metric in sorted(shared):
            ta, _ = _score_table(by_model[a], a, perturbation, level, metric)
            tb, _ = _score_table(by_model[b], b, perturbation, level, metric)
            if ta.seeds != tb.seeds or ta.volumes != tb.volumes:
                raise ValueError(
                    f"{a} and {b} under {perturbation} {level:g} ({metric}) are scored on different seeds or "
                    f"volumes (seeds {list(ta.seeds)} vs {list(tb.seeds)}, {len(ta.volumes)} vs {len(tb.volumes)} "
                    "volumes): a paired difference needs the same ones"
                )
            estimate = mean_interval(ta.values - tb.values)
            rows.append(
                {
                    "a": a,
                    "b": b,
                    "perturbation": perturbation,
                    "level": float(level),
                    "metric": metric,
                    "mean_a": float(ta.values.mean()),
                    "mean_b": float(tb.values.mean()),
                    "effect": estimate.effect,
                    "ci_low": estimate.ci_low,
                    "ci_high": estimate.ci_high,
                    "half_width": estimate.half_width,
                    "decided": bool(estimate.n_seeds >= 2 and estimate.excludes(0.0)),
                    "n_seeds": estimate.n_seeds,
                    "n_volumes": estimate.n_volumes,
                }
            )
    return pd.DataFrame(rows, columns=COMPARISON_COLUMNS)


# ---- the kinds of claims ------------------------------------------------------------------------


@dataclass(frozen=True)
class Condition:
    """One score table a claim reads.

    Attributes:
        name: the table's name in the statistic's tables, ``role|model``.
        model, perturbation, level, metric: the condition (``level`` None: its only level).
        model_key: the claim's key naming the model (``a``, ``models``), for error messages.
        where: the claim's key holding perturbation, level and metric (``""`` the claim itself,
            ``"x."`` its ``x``), or None where the kind fixes them (a drop's clean reference).
    """

    name: str
    model: str
    perturbation: str
    level: float | None
    metric: str
    model_key: str
    where: str | None

    @property
    def volume_set(self) -> str:
        """The test volumes it is scored on: the shift anatomy's, or the training anatomy's."""
        return SHIFT_VOLUMES if self.perturbation in SHIFT_PERTURBATIONS else TEST_VOLUMES


@dataclass(frozen=True)
class ClaimKind:
    """A kind of claim: the fields it reads and how its tables become one effect.

    Attributes:
        fields: field -> its type: ``group`` (a model, or a list of models meaning their average),
            ``models`` (a list of models), ``perturbation``, ``level`` (a number, or null for the
            perturbation's only level), ``condition`` (a mapping of perturbation, level and
            optionally metric, which defaults to the claim's).
        optional: the fields that may be left out (``level``: null).
        min_models: the fewest models a ``models`` field may list.
        conditions: claim -> the score tables it reads.
        statistic: claim -> a function of those tables (``name -> (seeds, volumes)``) to the effect.
        describe: claim -> a short text of what is compared, for tables and the figure.
    """

    fields: Mapping[str, str]
    optional: tuple[str, ...]
    min_models: int
    conditions: Callable[[dict], list[Condition]]
    statistic: Callable[[dict], Callable[[Mapping[str, np.ndarray]], float]]
    describe: Callable[[dict], str]


def _group(value: str | Sequence[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _spec(claim: dict, key: str | None) -> tuple[str, float | None, str, str]:
    """(perturbation, level, metric, where) of the claim itself (key None) or of its ``key``."""
    spec = claim if key is None else claim[key]
    level = spec.get("level")
    return (
        spec["perturbation"],
        None if level is None else float(level),
        spec.get("metric", claim["metric"]),
        ("" if key is None else f"{key}."),
    )


def _tables(
    role: str, models: Sequence[str], model_key: str, spec: tuple, fixed: bool = False
) -> list[Condition]:
    perturbation, level, metric, where = spec
    return [
        Condition(f"{role}|{m}", m, perturbation, level, metric, model_key, None if fixed else where)
        for m in models
    ]


def _clean(claim: dict) -> tuple[str, float, str, str]:
    return "clean", 0.0, claim["metric"], ""


def _means(tables: Mapping[str, np.ndarray], role: str, models: Sequence[str]) -> np.ndarray:
    """Each model's mean score of the tables of ``role``, in the order of ``models``."""
    return np.array([float(np.mean(tables[f"{role}|{m}"])) for m in models])


def _slope(x: np.ndarray, y: np.ndarray) -> float:
    """Least-squares slope of y on x; NaN (no estimate) when x does not vary."""
    dx = x - x.mean()
    spread = float((dx**2).sum())
    return float((dx * (y - y.mean())).sum() / spread) if spread > 0 else math.nan


def _correlation(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson's correlation; NaN (no estimate) when x or y does not vary."""
    dx, dy = x - x.mean(), y - y.mean()
    spread = math.sqrt(float((dx**2).sum() * (dy**2).sum()))
    return float((dx * dy).sum() / spread) if spread > 0 else math.nan


def _names(models: str | Sequence[str]) -> str:
    group = _group(models)
    return group[0] if len(group) == 1 else f"mean({', '.join(group)})"


def _where(spec: tuple, with_metric: bool = False) -> str:
    perturbation, level, metric, _ = spec
    text = (
        perturbation
        if level is None or perturbation in ("clean", *SHIFT_PERTURBATIONS)
        else f"{perturbation} {level:g}"
    )
    return f"{text} {metric}" if with_metric else text


def claim_kinds() -> dict[str, ClaimKind]:
    """The table of claim kinds: each kind's fields, the score tables it reads and its statistic.

    * ``difference``: ``a - b`` at one condition (each side a model or a group's average);
    * ``drop_difference``: ``(a_cond - a_clean) - (b_cond - b_clean)``, how much more ``a`` keeps
      of its clean score under a shift or an attack than ``b`` ("more stable under 8x sampling");
    * ``slope`` and ``correlation``: across ``models``, of their mean score ``y`` on their mean
      score ``x`` (two conditions, possibly of different metrics and volume sets);
    * ``gap_closed``: the mean over ``models`` of ``(ttt - shifted) / (clean - shifted)``, the
      fraction of the anatomy-shift gap test-time training closes (the sign of the metric cancels).

    Every statistic is a function of the tables' means, so tables on different volumes combine.
    """

    def groups(claim: dict) -> tuple[list[str], list[str]]:
        return _group(claim["a"]), _group(claim["b"])

    def difference_tables(claim: dict) -> list[Condition]:
        a, b = groups(claim)
        at = _spec(claim, None)
        return _tables("a", a, "a", at) + _tables("b", b, "b", at)

    def difference(claim: dict):
        a, b = groups(claim)
        return lambda t: float(_means(t, "a", a).mean() - _means(t, "b", b).mean())

    def drop_tables(claim: dict) -> list[Condition]:
        a, b = groups(claim)
        at, clean = _spec(claim, None), _clean(claim)
        return (
            _tables("a", a, "a", at)
            + _tables("a.clean", a, "a", clean, fixed=True)
            + _tables("b", b, "b", at)
            + _tables("b.clean", b, "b", clean, fixed=True)
        )

    def drop_difference(claim: dict):
        a, b = groups(claim)

        def statistic(t):
            drop_a = _means(t, "a", a).mean() - _means(t, "a.clean", a).mean()
            drop_b = _means(t, "b", b).mean() - _means(t, "b.clean", b).mean()
            return float(drop_a - drop_b)

        return statistic

    def across_tables(claim: dict) -> list[Condition]:
        models = list(claim["models"])
        return _tables("x", models, "models", _spec(claim, "x")) + _tables(
            "y", models, "models", _spec(claim, "y")
        )

    def across(function):
        def make(claim: dict):
            models = list(claim["models"])
            return lambda t: function(_means(t, "x", models), _means(t, "y", models))

        return make

    def gap_tables(claim: dict) -> list[Condition]:
        models, metric = list(claim["models"]), claim["metric"]
        return (
            _tables("in", models, "models", ("clean", 0.0, metric, ""), fixed=True)
            + _tables("shifted", models, "models", ("anatomy_shift", 0.0, metric, ""), fixed=True)
            + _tables("adapted", models, "models", ("ttt_anatomy_shift", 0.0, metric, ""), fixed=True)
        )

    def gap_closed(claim: dict):
        models = list(claim["models"])

        def statistic(t):
            inside, shifted, adapted = (_means(t, role, models) for role in ("in", "shifted", "adapted"))
            gap = inside - shifted
            # No gap, no fraction of it: NaN, which the interval reports as no estimate.
            return float(np.mean((adapted - shifted) / gap)) if np.all(gap != 0) else math.nan

        return statistic

    def across_text(word: str):
        def describe(claim: dict) -> str:
            x, y = _spec(claim, "x"), _spec(claim, "y")
            return f"{word} of {_where(y, True)} on {_where(x, True)} across {len(claim['models'])} models"

        return describe

    pair = {"a": "group", "b": "group", "perturbation": "perturbation", "level": "level"}
    return {
        "difference": ClaimKind(
            fields=pair,
            optional=("level",),
            min_models=1,
            conditions=difference_tables,
            statistic=difference,
            describe=lambda c: f"{_names(c['a'])} - {_names(c['b'])} at {_where(_spec(c, None))}",
        ),
        "drop_difference": ClaimKind(
            fields=pair,
            optional=("level",),
            min_models=1,
            conditions=drop_tables,
            statistic=drop_difference,
            describe=lambda c: (
                f"({_names(c['a'])}: {_where(_spec(c, None))} - clean) - ({_names(c['b'])}: {_where(_spec(c, None))} - clean)"
            ),
        ),
        **{
            word: ClaimKind(
                fields={"models": "models", "x": "condition", "y": "condition"},
                optional=(),
                min_models=3,
                conditions=across_tables,
                statistic=across(function),
                describe=across_text(word),
            )
            for word, function in (("slope", _slope), ("correlation", _correlation))
        },
        "gap_closed": ClaimKind(
            fields={"models": "models"},
            optional=(),
            min_models=1,
            conditions=gap_tables,
            statistic=gap_closed,
            describe=lambda c: (
                f"mean over {', '.join(c['models'])} of (ttt_anatomy_shift - anatomy_shift) / (clean - anatomy_shift)"
            ),
        ),
    }


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
    ``models``), with its random-noise counterpart at every grid of that noise; for the untrained
    network only ``untrained.attacks`` (transferred), no generator, and ``acceleration`` only with
    ``untrained.sampling_shift``; the min-max generators (level 1); ``acceleration`` at the
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
        if model == "untrained":
            for name in config["untrained"]["attacks"]:
                if name in attacks:
                    conditions[name] = tuple(float(e) for e in attacks[name]["eps"])
        else:
            for name, entry in attacks.items():
                if entry.get("models") is None or model in entry["models"]:
                    conditions[name] = tuple(float(e) for e in entry["eps"])
                    noise = NOISE_COUNTERPART[name]
                    conditions[noise] = tuple(sorted(noise_levels[noise]))
            for generator in evaluation["generators"]:
                conditions[f"generator_{generator}"] = (1.0,)
        if model != "untrained" or config["untrained"]["sampling_shift"]:
            conditions["acceleration"] = tuple(float(a) for a in accelerations)
        if method_family(model) == "unrolled" and evaluation["unrolls"]:
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
    elif not any(_same_level(condition.level, x) for x in levels):
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
    ``experiment`` when given) and what those are scored under; the others against
    :func:`evaluated_conditions`.

    Raises:
        ValueError: the first problem found, on one line.
    """
    validate_claims(claims)
    kinds = claim_kinds()
    evaluated = evaluated_conditions(config)
    for index, claim in enumerate(claims):
        where = _claim_place(claim, index)
        kind = kinds[claim["kind"]]
        if claim.get("source_table", "evaluation") == "ablations":
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


def _not_run(claim: dict, kind: ClaimKind, note: str) -> dict:
    return {
        **_claim_fields(claim, kind),
        "effect": math.nan,
        "ci_low": math.nan,
        "ci_high": math.nan,
        "half_width": math.nan,
        "n_seeds": math.nan,
        "n_volumes": math.nan,
        "verdict": NOT_RUN,
        "note": note,
    }


def _claim_fields(claim: dict, kind: ClaimKind) -> dict:
    return {
        "id": claim["id"],
        "source": claim["source"],
        "statement": claim["statement"],
        "kind": claim["kind"],
        "conditions": kind.describe(claim),
        "metric": claim["metric"],
        "direction": claim["direction"],
        "threshold": float(claim.get("threshold", 0.0)),
    }


def claim_tables(
    claim: dict, scores: pd.DataFrame, kind: ClaimKind | None = None
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The ``(seeds, volumes)`` tables a claim reads and the volume set of each.

    Raises:
        ValueError: a condition missing or incomplete, tables of different seeds, or tables of one
            volume set on different volumes (each naming the tables).
    """
    kind = kind or claim_kinds()[claim["kind"]]
    tables: dict[str, np.ndarray] = {}
    volume_sets: dict[str, str] = {}
    seeds: dict[str, tuple] = {}
    volumes: dict[str, tuple[str, tuple]] = {}
    for condition in kind.conditions(claim):
        table, level = _score_table(
            scores, condition.model, condition.perturbation, condition.level, condition.metric
        )
        label = _label(condition.model, condition.perturbation, level, condition.metric)
        tables[condition.name] = table.values
        volume_sets[condition.name] = condition.volume_set
        if seeds and table.seeds != next(iter(seeds.values())):
            other = next(iter(seeds))
            raise ValueError(
                f"{label} is scored on seeds {list(table.seeds)}, {other} on {list(seeds[other])}"
            )
        seeds.setdefault(label, table.seeds)
        first = volumes.setdefault(condition.volume_set, (label, table.volumes))
        if first[1] != table.volumes:
            raise ValueError(
                f"{label} and {first[0]} lie on the same ({condition.volume_set}) volumes but are scored on "
                f"different ones ({len(table.volumes)} vs {len(first[1])})"
            )
    return tables, volume_sets


def evaluate_claims(
    scores: pd.DataFrame, claims: Sequence[dict], ablation_scores: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Every claim's effect, its crossed 95 % interval and its verdict, one row per claim
    (:data:`CLAIM_COLUMNS`).

    ``half_width`` is about the smallest effect this run could decide. Claims of ``source_table:
    ablations`` read ``ablation_scores``; without them the row's verdict is ``not run`` and
    ``note`` says why. A statistic undefined on these scores (a correlation of models that all score
    alike) gives ``inconclusive`` with the reason in ``note``; a missing or incomplete condition is
    an error, since :func:`check_claims` has already held every claim against the config.

    Raises:
        ValueError: a malformed claim, or a condition missing from the scores, naming the claim.
    """
    from smug.evaluation.statistics import crossed_interval, verdict

    validate_claims(list(claims))
    kinds = claim_kinds()
    sources = {"evaluation": check_scores(scores)}
    if ablation_scores is not None:
        sources["ablations"] = check_scores(ablation_scores, "ablation scores")
    rows = []
    for claim in claims:
        kind = kinds[claim["kind"]]
        source = claim.get("source_table", "evaluation")
        if source not in sources:
            rows.append(
                _not_run(
                    claim, kind, "ablation scores not given (the ablations are run by `snakemake ablations`)"
                )
            )
            continue
        try:
            tables, volume_sets = claim_tables(claim, sources[source], kind)
        except ValueError as exc:
            raise ValueError(f"claim {claim['id']}: {exc}") from None
        threshold = float(claim.get("threshold", 0.0))
        try:
            estimate = crossed_interval(kind.statistic(claim), tables, volume_sets)
        except (ValueError, ZeroDivisionError, FloatingPointError) as exc:
            row = _not_run(claim, kind, f"no estimate: {exc}")
            row.update(verdict="inconclusive", n_seeds=next(iter(tables.values())).shape[0])
            rows.append(row)
            continue
        note = "" if estimate.n_seeds >= 2 else "one seed: the interval covers the volumes only, no verdict"
        rows.append(
            {
                **_claim_fields(claim, kind),
                "effect": estimate.effect,
                "ci_low": estimate.ci_low,
                "ci_high": estimate.ci_high,
                "half_width": estimate.half_width,
                "n_seeds": estimate.n_seeds,
                "n_volumes": estimate.n_volumes,
                "verdict": verdict(estimate, claim["direction"], threshold),
                "note": note,
            }
        )
    return pd.DataFrame(rows, columns=CLAIM_COLUMNS)


# ---- the README section ---------------------------------------------------------------------------


def effect_digits(kind: str, metric: str) -> int:
    """Decimals an effect is printed with: 2 for dB and for unitless slopes, correlations and
    fractions; 4 for SSIM and NMSE differences; 3 for the small-feature scores."""
    if kind in ("slope", "correlation", "gap_closed") or metric == "PSNR":
        return 2
    return 3 if metric in FEATURE_METRICS else 4


def _number(value: float, digits: int) -> str:
    return "–" if not np.isfinite(value) else f"{value:.{digits}f}"


def _markdown_cell(text: Any) -> str:
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def decided_line(comparison_table: pd.DataFrame) -> str:
    """``N of M paired comparisons decided`` with what deciding means."""
    decided = int(comparison_table["decided"].sum()) if len(comparison_table) else 0
    seeds = sorted(set(comparison_table["n_seeds"])) if len(comparison_table) else []
    seeds_text = f", {'/'.join(str(int(s)) for s in seeds)} seed(s)" if seeds else ""
    return (
        f"{decided} of {len(comparison_table)} paired comparisons decided (the 95 % interval of the paired "
        f"difference excludes 0, with at least two seeds{seeds_text})."
    )


def claims_markdown(claims_table: pd.DataFrame, comparison_table: pd.DataFrame) -> str:
    """The README's claims section, regenerated from a run's numbers: one row per claim with its
    effect, interval, the smallest effect the run could decide and its verdict, then how many of the
    paired comparisons the run decided."""
    lines = [
        "| claim | source | statement | compared | effect [95 % CI] | ± half-width | claimed | verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in claims_table.to_dict("records"):
        digits = effect_digits(row["kind"], row["metric"])
        if row["verdict"] == NOT_RUN:
            effect, half = "–", "–"
        else:
            effect = f"{_number(row['effect'], digits)} [{_number(row['ci_low'], digits)}, {_number(row['ci_high'], digits)}]"
            half = _number(row["half_width"], digits)
        sign = ">" if row["direction"] == "greater" else "<"
        verdict_text = row["verdict"] + (f" ({row['note']})" if row.get("note") else "")
        cells = [
            row["id"],
            row["source"],
            row["statement"],
            f"{row['conditions']} ({row['metric']})",
            effect,
            half,
            f"{sign} {row['threshold']:g}",
            verdict_text,
        ]
        lines.append("| " + " | ".join(_markdown_cell(c) for c in cells) + " |")
    counts = claims_table["verdict"].value_counts()
    summary = ", ".join(
        f"{counts[v]} {v}" for v in ("supported", "contradicted", "inconclusive", NOT_RUN) if v in counts
    )
    return "\n".join(
        [
            "## The studies' claims, tested",
            "",
            "Each claim's effect with a 95 % interval over training seeds and test volumes together (crossed "
            "jackknife, smug/evaluation/statistics.py): supported when the interval lies wholly on the claimed side of the "
            "threshold, contradicted when wholly on the other, else inconclusive. The half-width is about the "
            "smallest effect this run could decide.",
            "",
            *lines,
            "",
            f"Claims: {summary or 'none'}.",
            "",
            decided_line(comparison_table),
            "",
        ]
    )


__all__ = [
    "CLAIM_COLUMNS",
    "COMPARISON_COLUMNS",
    "SCORE_COLUMNS",
    "check_claims",
    "claim_kinds",
    "claims_markdown",
    "comparison_pairs",
    "comparisons",
    "evaluate_claims",
    "evaluated_conditions",
    "score_tables",
    "validate_claims",
]
