"""Intervals over training seeds and test volumes together, and the verdict a claim gets from one.

Every score of the study is measured on a crossed design: each training seed's model is scored on
the same test volumes, so a table of one condition is a ``(seeds, volumes)`` array. Both factors
vary from one replication to the next (another seed retrains the model; another sample of volumes
re-scores it), so an honest interval of an effect accounts for both.

The interval here is the crossed jackknife: the delete-one-seed and the delete-one-volume jackknife
variances of the statistic, added (for a mean this is Owen's pigeonhole variance ``(MS_seed +
MS_volume) / (S V)``, which slightly overstates the variance by the seed-by-volume interaction
term), with a t quantile whose degrees of freedom follow Satterthwaite. It was chosen by simulated
coverage at the study's sizes (3 seeds, 3-8 volumes; ``tests/test_statistics.py``):

==================================  ===========================================================
interval                            coverage of a known mean, 95 % nominal
==================================  ===========================================================
t over the seeds' means             0.17-0.95: ignores the volumes, fails when they dominate
two-way ANOVA (unbiased variance)   0.81-0.97: undercovers when the interaction dominates
crossed jackknife (this module)     0.92-0.99 in every variance mix tried
==================================  ===========================================================

A percentile bootstrap over three seeds has at most ten distinct resamples and undercovers; the
jackknife also extends to effects that are not means (a slope across models, a fraction of a gap)
without resampling. With one seed the interval covers the volumes only, and no verdict is given.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np

Tables = Mapping[str, np.ndarray]

VERDICTS = ("supported", "contradicted", "inconclusive")


@dataclass(frozen=True)
class Estimate:
    """An effect with its interval: ``effect`` in ``[ci_low, ci_high]`` at ``level``."""

    effect: float
    ci_low: float
    ci_high: float
    n_seeds: int
    n_volumes: int
    df: float
    level: float = 0.95

    @property
    def half_width(self) -> float:
        """Half the interval's width: about the smallest effect this design could have decided."""
        return (self.ci_high - self.ci_low) / 2

    def excludes(self, value: float = 0.0) -> bool:
        """Whether ``value`` lies outside the interval (the order against it is decided)."""
        return self.ci_low > value or self.ci_high < value


def crossed_interval(
    statistic: Callable[[dict[str, np.ndarray]], float],
    tables: Tables,
    volume_sets: Mapping[str, str] | None = None,
    level: float = 0.95,
) -> Estimate:
    """The statistic of ``tables`` with a crossed-jackknife interval over seeds and volumes.

    Args:
        statistic: maps tables (each ``(S, V)``, seeds by volumes) to one number.
        tables: ``(S, V_k)`` arrays, one per condition the statistic reads; every table has the
            same seeds, in the same order.
        volume_sets: which set of test volumes each table is scored on (tables on one set share
            their volumes, in the same order, and lose the same volume together); default: one set.
        level: the interval's coverage.

    Raises:
        ValueError: tables of different seed counts, tables of one volume set with different volume
            counts, a non-finite score, or a non-finite statistic.
    """
    arrays = {name: np.asarray(table, dtype=float) for name, table in tables.items()}
    if not arrays:
        raise ValueError("no tables to estimate from")
    for name, array in arrays.items():
        if array.ndim != 2 or array.size == 0:
            raise ValueError(f"{name}: expected a non-empty (seeds, volumes) table, got shape {array.shape}")
        if not np.isfinite(array).all():
            raise ValueError(f"{name}: holds non-finite scores")
    seeds = {array.shape[0] for array in arrays.values()}
    if len(seeds) != 1:
        raise ValueError(
            f"tables of different numbers of seeds: { {n: a.shape[0] for n, a in arrays.items()} }"
        )
    n_seeds = seeds.pop()
    volume_sets = dict(volume_sets or {name: "test" for name in arrays})
    groups: dict[str, list[str]] = {}
    for name in arrays:
        groups.setdefault(volume_sets[name], []).append(name)
    for members in groups.values():
        if len({arrays[name].shape[1] for name in members}) != 1:
            raise ValueError(f"tables {members} share their volumes but differ in their number")

    effect = _finite(statistic(arrays), "the statistic")
    # One jackknife per factor: the seeds, and each set of volumes.
    factors = [(n_seeds, lambda i: {name: np.delete(a, i, axis=0) for name, a in arrays.items()})]
    for members in groups.values():
        n = arrays[members[0]].shape[1]
        factors.append(
            (
                n,
                lambda i, members=members: {
                    name: np.delete(a, i, axis=1) if name in members else a for name, a in arrays.items()
                },
            )
        )
    variances, dfs = [], []
    for n, drop in factors:
        if n < 2:
            continue
        leave_one_out = np.array([_finite(statistic(drop(i)), "the statistic") for i in range(n)])
        variances.append((n - 1) / n * float(((leave_one_out - leave_one_out.mean()) ** 2).sum()))
        dfs.append(n - 1)
    variance = sum(variances)
    n_volumes = sum(arrays[members[0]].shape[1] for members in groups.values())
    if variance <= 0:
        return Estimate(effect, effect, effect, n_seeds, n_volumes, math.inf, level)
    df = variance**2 / sum(v**2 / d for v, d in zip(variances, dfs) if v > 0)
    # Imported here: scipy.stats takes half a second to import, paid by every attack and
    # evaluation job that only needs this module's types.
    from scipy import stats

    half = float(stats.t.ppf(0.5 + level / 2, df)) * math.sqrt(variance)
    return Estimate(effect, effect - half, effect + half, n_seeds, n_volumes, df, level)


def mean_interval(scores: np.ndarray, level: float = 0.95) -> Estimate:
    """The mean of a ``(seeds, volumes)`` table with its crossed-jackknife interval."""
    return crossed_interval(lambda t: float(t["scores"].mean()), {"scores": scores}, level=level)


def verdict(estimate: Estimate, direction: str, threshold: float = 0.0) -> str:
    """``supported`` when the interval lies wholly on the claimed side of ``threshold``,
    ``contradicted`` when wholly on the other, else ``inconclusive``; always ``inconclusive`` with
    fewer than two seeds, whose interval leaves the training noise out.

    ``direction`` is ``greater`` (the claim: effect > threshold) or ``less`` (effect < threshold).
    """
    if direction not in ("greater", "less"):
        raise ValueError(f"unknown direction {direction!r}: use greater or less")
    if estimate.n_seeds < 2:
        return "inconclusive"
    above, below = estimate.ci_low > threshold, estimate.ci_high < threshold
    if not (above or below):
        return "inconclusive"
    return "supported" if above == (direction == "greater") else "contradicted"


def _finite(value: float, what: str) -> float:
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{what} is not finite ({value})")
    return value
