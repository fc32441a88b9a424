"""The README's claims section, regenerated from a run's claims and comparison tables."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from smug.evaluation import NOT_RUN
from smug.study.claims import FEATURE_METRICS


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
