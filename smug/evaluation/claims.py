"""Claims and comparisons measured: the score tables of a run, the paired comparisons the design
can decide and each claim's effect with its crossed interval and verdict.

Every score is measured on a crossed design (each training seed's model on the same test volumes),
so each condition is a ``(seeds, volumes)`` table (:func:`score_tables`) and each effect gets the
crossed jackknife interval of :mod:`smug.evaluation.statistics`, whose verdict is ``supported`` when
the interval lies wholly on the claimed side of the threshold, ``contradicted`` when wholly on the
other, else ``inconclusive``. In- and out-of-distribution conditions are scored on different
volumes (the shift anatomy's), and each table is told its volume set.

Besides the claims, :func:`comparisons` lists the paired differences the design can decide (every
method against MoDL, SMUG against every other unrolled network, under every shared condition).
What a claim is, its kinds and its checks against the config: :mod:`smug.study.claims`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from smug.evaluation.statistics import crossed_interval, mean_interval, verdict
from smug.study import method_family, ClaimKind, claim_kinds, same_level, validate_claims

# The per-volume rows of every seed: smug.evaluation.scoring.ROW_COLUMNS (a test holds them equal), written
# out so that building the DAG, which checks the claims, never imports torch.
SCORE_COLUMNS = ["model", "perturbation", "level", "metric", "seed", "volume", "value", "n_slices"]


KEY_COLUMNS = ["model", "perturbation", "level", "metric"]


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
        part = part[[same_level(x, level) for x in part["level"]]]
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


# Where the scores of each source table come from, for the note of a claim whose scores were not given.
_SOURCE_RUN = {
    "ablations": "ablation scores not given (the ablations are run by `snakemake ablations`)",
    "backbones": "backbone scores not given (the backbones are run by `snakemake backbones`)",
}


def evaluate_claims(
    scores: pd.DataFrame,
    claims: Sequence[dict],
    ablation_scores: pd.DataFrame | None = None,
    backbone_scores: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Every claim's effect, its crossed 95 % interval and its verdict, one row per claim
    (:data:`CLAIM_COLUMNS`).

    ``half_width`` is about the smallest effect this run could decide. Claims of ``source_table:
    ablations`` read ``ablation_scores`` and those of ``source_table: backbones`` ``backbone_scores``;
    without them the row's verdict is ``not run`` and ``note`` says why. A statistic undefined on these scores (a correlation of models that all score
    alike) gives ``inconclusive`` with the reason in ``note``; a missing or incomplete condition is
    an error, since :func:`check_claims` has already held every claim against the config.

    Raises:
        ValueError: a malformed claim, or a condition missing from the scores, naming the claim.
    """

    validate_claims(list(claims))
    kinds = claim_kinds()
    sources = {"evaluation": check_scores(scores)}
    if ablation_scores is not None:
        sources["ablations"] = check_scores(ablation_scores, "ablation scores")
    if backbone_scores is not None:
        sources["backbones"] = check_scores(backbone_scores, "backbone scores")
    rows = []
    for claim in claims:
        kind = kinds[claim["kind"]]
        source = claim.get("source_table", "evaluation")
        if source not in sources:
            rows.append(_not_run(claim, kind, _SOURCE_RUN[source]))
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
