"""``results/tables/ablations.csv``: every ablation experiment's models, scored and diagnosed.

One tidy table: per (experiment, model, perturbation, level, metric) the mean, std and 95 %
interval over seeds and test volumes of the clean and attacked scores (as ``robustness.csv``), and
the :mod:`smug.evaluation.diagnostics` measurements as rows of protocol ``diagnostic`` (their ``mean`` is the
measured value averaged over the seeds; no interval). Each row names the model's method, its setting (``sigma=0.02``), its
role (variant or reference) and whether it passed the training-health checks.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping

import pandas as pd

from smug.reporting.tables import ROBUSTNESS_COLUMNS, robustness_table

MODEL_COLUMNS = ["experiment", "model", "method", "setting", "role", "healthy"]
ABLATION_COLUMNS = [*MODEL_COLUMNS, *ROBUSTNESS_COLUMNS[1:]]
DIAGNOSTIC = "diagnostic"


def ablation_table(
    experiments: Mapping[str, list[Mapping[str, Any]]],
    scores: Iterable[pd.DataFrame],
    diagnostics: Iterable[pd.DataFrame],
    health: pd.DataFrame,
    config_hash: str,
    git_commit: str,
) -> pd.DataFrame:
    """The ablation table.

    Args:
        experiments: experiment -> its models, each ``{model, method, setting, role, diagnosed}``
            (:func:`smug.study.ablations.experiment_models`); ``diagnosed``: whether the experiment shows
            the model's diagnostics.
        scores: per-volume evaluation rows of the models (``scripts/evaluate.py``).
        diagnostics: :mod:`smug.evaluation.diagnostics` rows of the models that were diagnosed.
        health: the ablation models' training-health table (:func:`smug.reporting.health.health_table`);
            a model absent from it (a classical reference) is marked healthy if it has no checks.
        config_hash, git_commit: provenance, on every row.

    Raises:
        ValueError: an experiment's model without scores.
    """
    summary = robustness_table(scores, config_hash, git_commit)
    frames = [df for df in diagnostics if not df.empty]
    measured = _over_seeds(pd.concat(frames, ignore_index=True)) if frames else pd.DataFrame()
    verdicts = dict(zip(health["model"], health["healthy"]))
    rows = []
    for experiment, models in experiments.items():
        for entry in models:
            name = entry["model"]
            own = summary[summary["model"] == name]
            if own.empty:
                raise ValueError(f"ablation {experiment!r}: model {name!r} has no evaluation scores")
            info = {
                "experiment": experiment,
                "method": entry["method"],
                "setting": entry["setting"],
                "role": entry["role"],
                "healthy": bool(verdicts.get(name, True)),
            }
            rows += [{**info, **row} for row in own.to_dict("records")]
            if entry["diagnosed"] and not measured.empty:
                for row in measured[measured["model"] == name].to_dict("records"):
                    rows.append({**info, **_diagnostic_row(row, config_hash, git_commit)})
    return pd.DataFrame(rows, columns=ABLATION_COLUMNS)


def _over_seeds(diagnostics: pd.DataFrame) -> pd.DataFrame:
    """Each diagnostic quantity averaged over the seeds it was measured on, with their number."""
    if "seed" not in diagnostics.columns:
        return diagnostics.assign(n_seeds=1)
    keys = ["model", "quantity", "level", "statistic"]
    grouped = diagnostics.groupby(keys, sort=False)
    return grouped.agg(
        value=("value", "mean"), n_slices=("n_slices", "first"), n_seeds=("seed", "nunique")
    ).reset_index()


def _diagnostic_row(row: Mapping[str, Any], config_hash: str, git_commit: str) -> dict[str, Any]:
    return {
        "model": row["model"],
        "perturbation": row["quantity"],
        "protocol": DIAGNOSTIC,
        "level": float(row["level"]),
        "metric": row["statistic"],
        "mean": float(row["value"]),
        "std": math.nan,
        "ci_low": math.nan,
        "ci_high": math.nan,
        "n_slices": int(row["n_slices"]),
        "n_seeds": int(row["n_seeds"]),
        "config_hash": config_hash,
        "git_commit": git_commit,
    }


def scored_rows(table: pd.DataFrame, experiment: str, metric: str = "PSNR") -> pd.DataFrame:
    """An experiment's clean and attacked ``metric`` rows (no diagnostics)."""
    rows = table[(table["experiment"] == experiment) & (table["protocol"] != DIAGNOSTIC)]
    return rows[rows["metric"] == metric]


def middle_levels(rows: pd.DataFrame) -> dict[str, float]:
    """Per attacked perturbation, the middle of its eps grid (the lower middle of an even grid):
    where the ablation figures compare attacked scores."""
    levels = {}
    for perturbation, group in rows[rows["perturbation"] != "clean"].groupby("perturbation", sort=False):
        grid = sorted(group["level"].astype(float).unique())
        levels[perturbation] = grid[(len(grid) - 1) // 2]
    return levels
