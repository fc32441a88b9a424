"""The robustness table: tidy long format for machines, wide paper-style tables for people."""

from __future__ import annotations

import os
from typing import Iterable

import pandas as pd

from smug.attacks import attack_protocol
from smug.evaluation import TABLE_COLUMNS, summarize
from smug.utils import atomic_path

# ``protocol`` says how each row's perturbation was made (smug.attacks.perturbations.attack_protocol): white-box
# PGD with EOT, a SMUG paper's own protocol, random noise, a generator's transfer, clean or shift.
ROBUSTNESS_COLUMNS = [*TABLE_COLUMNS[:2], "protocol", *TABLE_COLUMNS[2:], "config_hash", "git_commit"]


def robustness_table(per_volume: Iterable[pd.DataFrame], config_hash: str, git_commit: str) -> pd.DataFrame:
    """Summarise per-volume rows of every model and seed into ``results/tables/robustness.csv``'s schema.

    One row per (model, perturbation, level, metric): the mean and std over seeds and test volumes,
    the crossed seeds-by-volumes 95 % interval, the slices of one seed, the number of seeds, and the
    configuration hash and commit that produced it.
    """
    rows = _checked_rows(per_volume)
    return _with_provenance(summarize(rows), config_hash, git_commit)


def robustness_by_seed(per_volume: Iterable[pd.DataFrame], config_hash: str, git_commit: str) -> pd.DataFrame:
    """Every seed's own summary (``results/tables/robustness_by_seed.csv``): the columns of
    :func:`robustness_table` plus ``seed``; each row's interval covers that seed's test volumes only."""
    rows = _checked_rows(per_volume)
    parts = [summarize(group).assign(seed=seed) for seed, group in rows.groupby("seed", sort=True)]
    table = _with_provenance(pd.concat(parts, ignore_index=True), config_hash, git_commit)
    return table[[*ROBUSTNESS_COLUMNS[:-2], "seed", *ROBUSTNESS_COLUMNS[-2:]]]


def _checked_rows(per_volume: Iterable[pd.DataFrame]) -> pd.DataFrame:
    rows = pd.concat(list(per_volume), ignore_index=True)
    if rows.empty:
        raise ValueError("no evaluation rows to summarise")
    if rows["value"].isna().any():
        bad = rows[rows["value"].isna()][["model", "perturbation", "level", "metric"]].drop_duplicates()
        raise ValueError(f"NaN metric values for {bad.to_dict('records')[:3]}")
    return rows


def _with_provenance(table: pd.DataFrame, config_hash: str, git_commit: str) -> pd.DataFrame:
    table["protocol"] = [
        attack_protocol(name, model) for name, model in zip(table["perturbation"], table["model"])
    ]
    table["config_hash"] = config_hash
    table["git_commit"] = git_commit
    return table[[*ROBUSTNESS_COLUMNS, *(c for c in table.columns if c not in ROBUSTNESS_COLUMNS)]]


def wide_table(table: pd.DataFrame, perturbation: str, metric: str) -> pd.DataFrame:
    """Models as rows, levels as columns, ``mean ± std`` as cells (the papers' layout)."""
    part = table[(table["perturbation"] == perturbation) & (table["metric"] == metric)]
    if part.empty:
        raise ValueError(f"no rows for perturbation {perturbation!r} and metric {metric!r}")
    digits = 2 if metric == "PSNR" else 4
    cells = part.assign(cell=[f"{m:.{digits}f} ± {s:.{digits}f}" for m, s in zip(part["mean"], part["std"])])
    wide = cells.pivot(index="model", columns="level", values="cell")
    wide.columns = [f"{level:g}" for level in wide.columns]
    wide.columns.name = f"{perturbation} level"
    return wide


SHIFT_COLUMNS = ["model", "metric", "in_distribution", "anatomy_shift", "ttt", "gap", "gap_closed"]


def shift_summary(table: pd.DataFrame) -> pd.DataFrame:
    """In- vs out-of-distribution scores per model, and how much of the gap test-time training closes.

    ``in_distribution`` is the clean score on the training anatomy's test volumes, ``anatomy_shift``
    the clean score on the other anatomy's, ``ttt`` the latter after test-time training (NaN for
    models not adapted), ``gap = in_distribution - anatomy_shift`` and ``gap_closed = (ttt -
    anatomy_shift) / gap`` (for NMSE, where lower is better, the signs flip so that a positive gap
    is still a loss). Empty (with the columns) when the table has no anatomy-shift rows.
    """
    rows = []
    means = table.set_index(["model", "perturbation", "metric"])["mean"]
    shifted = table[table["perturbation"] == "anatomy_shift"]
    for (model, metric), group in shifted.groupby(["model", "metric"], sort=True):
        if metric not in ("PSNR", "SSIM", "NMSE"):
            continue
        sign = -1.0 if metric == "NMSE" else 1.0
        inside = means.get((model, "clean", metric), float("nan"))
        outside = float(group["mean"].iloc[0])
        ttt = means.get((model, "ttt_anatomy_shift", metric), float("nan"))
        gap = sign * (inside - outside)
        rows.append(
            {
                "model": model,
                "metric": metric,
                "in_distribution": inside,
                "anatomy_shift": outside,
                "ttt": ttt,
                "gap": gap,
                "gap_closed": sign * (ttt - outside) / gap if gap > 0 else float("nan"),
            }
        )
    return pd.DataFrame(rows, columns=SHIFT_COLUMNS)


# Metrics shown in the wide tables; small-feature rows add their own two.
_WIDE_METRICS = ("PSNR", "SSIM")
_FEATURE_METRICS = ("feature_error", "feature_detected")


def write_wide_tables(table: pd.DataFrame, markdown: str | os.PathLike, latex: str | os.PathLike) -> None:
    """One markdown and one LaTeX document with a PSNR and an SSIM table per perturbation."""
    md_parts, tex_parts = [], []
    for perturbation in sorted(table["perturbation"].unique()):
        metrics = _WIDE_METRICS + (_FEATURE_METRICS if perturbation == "small_feature" else ())
        for metric in metrics:
            wide = wide_table(table, perturbation, metric)
            protocol = attack_protocol(perturbation)
            title = f"{perturbation} ({protocol})" if protocol not in ("clean", "shift") else perturbation
            md_parts.append(
                f"### {title}: {metric} (mean ± std over seeds and test volumes)\n\n{wide.to_markdown()}\n"
            )
            tex_parts.append(
                wide.to_latex(
                    caption=f"{title}: {metric} (mean $\\pm$ std over seeds and test volumes)", escape=True
                )
            )
    with atomic_path(markdown) as tmp:
        tmp.write_text("\n".join(md_parts))
    with atomic_path(latex) as tmp:
        tmp.write_text("\n".join(tex_parts))
