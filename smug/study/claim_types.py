"""The kinds of claims: which score tables a claim of each kind reads and how they become one effect
(a difference, a difference of drops, a slope or correlation across models, a fraction of a gap
closed). :func:`claim_kinds` is the one table of kinds: a reviewer adds a kind with one entry there.

Plain data and numpy (the workflow imports it to check the claims).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np

# Conditions scored on the shift anatomy's test volumes; every other one on the training anatomy's.
SHIFT_PERTURBATIONS = ("anatomy_shift", "ttt_anatomy_shift")


TEST_VOLUMES, SHIFT_VOLUMES = "test", "shift"


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


def _pairs(claim: dict, text: str) -> str:
    """How a difference reads: of the groups' averages, or (``each: true``) pair by pair."""
    if not claim.get("each"):
        return text
    worst = "smallest" if claim["direction"] == "greater" else "largest"
    return f"{worst} over the pairs ({'; '.join(f'{x} vs {y}' for x, y in zip(*_groups(claim)))}) of {text}"


def _side(claim: dict, key: str) -> str:
    """A side of a difference as its description names it: the key itself when compared pair by pair."""
    return key if claim.get("each") else _names(claim[key])


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


def _groups(claim: dict) -> tuple[list[str], list[str]]:
    return _group(claim["a"]), _group(claim["b"])


def _difference_tables(claim: dict) -> list[Condition]:
    a, b = _groups(claim)
    at = _spec(claim, None)
    return _tables("a", a, "a", at) + _tables("b", b, "b", at)


def _least_favourable(claim: dict, effects: np.ndarray) -> float:
    """``each: true``: the pair least in the claimed direction (the smallest effect of a ``greater``
    claim, the largest of a ``less`` one), so the claim holds for every pair when it holds for it."""
    return float(effects.min() if claim["direction"] == "greater" else effects.max())


def _difference(claim: dict):
    a, b = _groups(claim)
    if claim.get("each"):
        return lambda t: _least_favourable(claim, _means(t, "a", a) - _means(t, "b", b))
    return lambda t: float(_means(t, "a", a).mean() - _means(t, "b", b).mean())


def _drop_tables(claim: dict) -> list[Condition]:
    a, b = _groups(claim)
    at, clean = _spec(claim, None), _clean(claim)
    return (
        _tables("a", a, "a", at)
        + _tables("a.clean", a, "a", clean, fixed=True)
        + _tables("b", b, "b", at)
        + _tables("b.clean", b, "b", clean, fixed=True)
    )


def _drop_difference(claim: dict):
    a, b = _groups(claim)

    def statistic(t):
        drops_a = _means(t, "a", a) - _means(t, "a.clean", a)
        drops_b = _means(t, "b", b) - _means(t, "b.clean", b)
        if claim.get("each"):
            return _least_favourable(claim, drops_a - drops_b)
        return float(drops_a.mean() - drops_b.mean())

    return statistic


def _across_tables(claim: dict) -> list[Condition]:
    models = list(claim["models"])
    return _tables("x", models, "models", _spec(claim, "x")) + _tables(
        "y", models, "models", _spec(claim, "y")
    )


def _across(function):
    def make(claim: dict):
        models = list(claim["models"])
        return lambda t: function(_means(t, "x", models), _means(t, "y", models))

    return make


def _gap_tables(claim: dict) -> list[Condition]:
    models, metric = list(claim["models"]), claim["metric"]
    return (
        _tables("in", models, "models", ("clean", 0.0, metric, ""), fixed=True)
        + _tables("shifted", models, "models", ("anatomy_shift", 0.0, metric, ""), fixed=True)
        + _tables("adapted", models, "models", ("ttt_anatomy_shift", 0.0, metric, ""), fixed=True)
    )


def _gap_closed(claim: dict):
    models = list(claim["models"])

    def statistic(t):
        inside, shifted, adapted = (_means(t, role, models) for role in ("in", "shifted", "adapted"))
        gap = inside - shifted
        # No gap, no fraction of it: NaN, which the interval reports as no estimate.
        return float(np.mean((adapted - shifted) / gap)) if np.all(gap != 0) else math.nan

    return statistic


def _across_text(word: str):
    def describe(claim: dict) -> str:
        x, y = _spec(claim, "x"), _spec(claim, "y")
        return f"{word} of {_where(y, True)} on {_where(x, True)} across {len(claim['models'])} models"

    return describe


_PAIR = {"a": "group", "b": "group", "perturbation": "perturbation", "level": "level"}


def claim_kinds() -> dict[str, ClaimKind]:
    """The table of claim kinds: each kind's fields, the score tables it reads and its statistic.

    * ``difference``: ``a - b`` at one condition (each side a model or a group's average; with
      ``each: true``, two lists compared pair by pair, the effect the least favourable pair's, so
      "for every backbone" holds when it holds for the worst one);
    * ``drop_difference``: ``(a_cond - a_clean) - (b_cond - b_clean)``, how much more ``a`` keeps
      of its clean score under a shift or an attack than ``b`` ("more stable under 8x sampling");
    * ``slope`` and ``correlation``: across ``models``, of their mean score ``y`` on their mean
      score ``x`` (two conditions, possibly of different metrics and volume sets);
    * ``gap_closed``: the mean over ``models`` of ``(ttt - shifted) / (clean - shifted)``, the
      fraction of the anatomy-shift gap test-time training closes (the sign of the metric cancels).

    Every statistic is a function of the tables' means, so tables on different volumes combine.
    """

    return {
        "difference": ClaimKind(
            fields=_PAIR,
            optional=("level",),
            min_models=1,
            conditions=_difference_tables,
            statistic=_difference,
            describe=lambda c: _pairs(c, f"{_side(c, 'a')} - {_side(c, 'b')} at {_where(_spec(c, None))}"),
        ),
        "drop_difference": ClaimKind(
            fields=_PAIR,
            optional=("level",),
            min_models=1,
            conditions=_drop_tables,
            statistic=_drop_difference,
            describe=lambda c: _pairs(
                c,
                f"({_side(c, 'a')}: {_where(_spec(c, None))} - clean) - ({_side(c, 'b')}: {_where(_spec(c, None))} - clean)",
            ),
        ),
        **{
            word: ClaimKind(
                fields={"models": "models", "x": "condition", "y": "condition"},
                optional=(),
                min_models=3,
                conditions=_across_tables,
                statistic=_across(function),
                describe=_across_text(word),
            )
            for word, function in (("slope", _slope), ("correlation", _correlation))
        },
        "gap_closed": ClaimKind(
            fields={"models": "models"},
            optional=(),
            min_models=1,
            conditions=_gap_tables,
            statistic=_gap_closed,
            describe=lambda c: (
                f"mean over {', '.join(c['models'])} of (ttt_anatomy_shift - anatomy_shift) / (clean - anatomy_shift)"
            ),
        ),
    }
