"""The claims table drawn for people: a forest plot and an HTML page for the Snakemake report.

Each claim has its own unit (dB, a correlation, a fraction of a gap), so the forest plot gives each
its own row and x-axis: the effect and its 95 % interval over seeds and volumes, the threshold it is
held against as a dashed line, the claimed side shaded, coloured by verdict. A claim that was not
run (its scores not given) is a line of text. The HTML page is the same table through pandas'
Styler: every text escaped, numbers rounded per column, the verdict cell classed for colour.
"""

from __future__ import annotations

import html
import os

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from smug.evaluation import NOT_RUN
from smug.reporting.html import html_page
from smug.utils import atomic_path, write_text_atomic
from smug.reporting.plots import PNG_DPI, save_figure

_PALETTE = sns.color_palette("colorblind", 10)
# Verdict colours from the colour-blind palette the other figures use; grey for undecided.
VERDICT_COLORS = {
    "supported": _PALETTE[2],
    "contradicted": _PALETTE[3],
    "inconclusive": (0.45, 0.45, 0.45),
    NOT_RUN: (0.6, 0.6, 0.6),
}
_CLAIMED_SIDE = (0.86, 0.93, 0.86)


def _x_range(row: dict) -> tuple[float, float]:
    """The x-limits of one claim's row: its interval and its threshold, padded."""
    values = [v for v in (row["ci_low"], row["ci_high"], row["effect"], row["threshold"]) if np.isfinite(v)]
    low, high = min(values), max(values)
    span = high - low or max(abs(high), 1.0) * 0.5
    return low - 0.15 * span, high + 0.15 * span


def plot_claims(
    claims_table: pd.DataFrame, path: str | os.PathLike, pdf: str | os.PathLike | None = None
) -> Figure:
    """Draw the forest plot of ``claims_table`` (:func:`smug.study.claims.evaluate_claims`) to ``path``
    (PNG), and to ``pdf`` too when given.

    One row per claim, labelled by its id: the effect (dot) and its 95 % interval (bar) coloured by
    verdict, the threshold as a dashed line, the side the claim asserts shaded with an arrow
    pointing into it; the verdict and the interval printed at the right. Each row has its own
    x-axis, the claims' units differing.
    """
    rows = claims_table.to_dict("records")
    if not rows:
        raise ValueError("no claims to plot")
    figure = Figure(figsize=(9.0, 0.62 * len(rows) + 0.9), layout="constrained")
    axes = figure.subplots(len(rows), 1, squeeze=False)[:, 0]
    for ax, row in zip(axes, rows):
        ax.set_yticks([0.0])
        ax.set_yticklabels([row["id"]], fontsize=7)
        ax.set_ylim(-1.0, 1.0)
        ax.tick_params(axis="x", labelsize=6, pad=1)
        for side in ("top", "right", "left"):
            ax.spines[side].set_visible(False)
        color = VERDICT_COLORS.get(row["verdict"], VERDICT_COLORS["inconclusive"])
        if row["verdict"] == NOT_RUN or not np.isfinite(row["effect"]):
            ax.set_xticks([])
            ax.spines["bottom"].set_visible(False)
            reason = f": {row['note']}" if row.get("note") else ""
            ax.text(
                0.0,
                0.0,
                f"{row['verdict']}{reason}",
                transform=ax.get_yaxis_transform(),
                va="center",
                fontsize=7,
                color=color,
            )
            continue
        low, high = _x_range(row)
        threshold = float(row["threshold"])
        greater = row["direction"] == "greater"
        ax.set_xlim(low, high)
        ax.axvspan(*((threshold, high) if greater else (low, threshold)), color=_CLAIMED_SIDE, lw=0)
        ax.axvline(threshold, color="black", ls="--", lw=0.8)
        reach = 0.08 * (high - low)
        ax.annotate(
            "",
            xy=(threshold + (reach if greater else -reach), 0.65),
            xytext=(threshold, 0.65),
            arrowprops={"arrowstyle": "->", "color": "black", "lw": 0.8},
        )
        ax.plot([row["ci_low"], row["ci_high"]], [0.0, 0.0], color=color, lw=2.2, solid_capstyle="butt")
        ax.plot([row["effect"]], [0.0], "o", color=color, ms=5)
        sign = ">" if greater else "<"
        ax.text(
            1.01,
            0.0,
            f"{row['verdict']}  {row['effect']:.3g} [{row['ci_low']:.3g}, {row['ci_high']:.3g}], claim {sign} {threshold:g}",
            transform=ax.get_yaxis_transform(),  # x across the axes, y on the interval's line
            va="center",
            fontsize=6.5,
            color=color,
        )
    figure.suptitle(
        "Claims: effect and 95 % interval over seeds and volumes (own axis per claim; dashed: threshold, "
        "shaded: claimed side)",
        fontsize=8,
    )
    if pdf is not None:
        save_figure(figure, path, pdf)
    else:
        with atomic_path(path) as tmp:
            figure.savefig(tmp, format="png", dpi=PNG_DPI)
    return figure


# ---- the HTML page --------------------------------------------------------------------------------

_CLAIM_CSS = """
td.verdict { font-weight: 700; text-align: center; }
td.supported { color: #1a7f37; background: #dafbe1; }
td.contradicted { color: #a40e26; background: #ffebe9; }
td.inconclusive { color: #57606a; background: #f6f8fa; }
td.not-run { color: #57606a; font-style: italic; font-weight: 400; }
td.text { text-align: left; white-space: normal; max-width: 36em; }
"""

# The columns shown, their headers and formats; the statement and notes are text.
_HTML_COLUMNS = {
    "id": "claim",
    "source": "source",
    "statement": "statement",
    "conditions": "compared",
    "metric": "metric",
    "direction": "claimed",
    "threshold": "threshold",
    "effect": "effect",
    "ci_low": "95 % CI low",
    "ci_high": "95 % CI high",
    "half_width": "± half-width",
    "n_seeds": "seeds",
    "n_volumes": "volumes",
    "verdict": "verdict",
    "note": "note",
}
_NUMBER_FORMATS = {
    "threshold": "{:g}",
    "effect": "{:.3g}",
    "ci_low": "{:.3g}",
    "ci_high": "{:.3g}",
    "half_width": "{:.2g}",
    "n_seeds": "{:.0f}",
    "n_volumes": "{:.0f}",
}
_TEXT_COLUMNS = ("statement", "conditions", "note", "source")


def _verdict_class(verdict: str) -> str:
    return "verdict " + str(verdict).replace(" ", "-")


def claims_html(claims_table: pd.DataFrame, decided: str | None = None) -> str:
    """The claims table as a self-contained HTML page (pandas Styler, escaping on): one row per
    claim, numbers rounded per column, the verdict cell classed ``supported``, ``contradicted``,
    ``inconclusive`` or ``not-run`` for colour. ``decided``: a line on the paired comparisons."""
    shown = claims_table.reindex(columns=list(_HTML_COLUMNS)).reset_index(drop=True)
    shown["note"] = shown["note"].fillna("")
    classes = pd.DataFrame("", index=shown.index, columns=shown.columns)
    classes["verdict"] = [_verdict_class(v) for v in shown["verdict"]]
    for column in _TEXT_COLUMNS:
        classes[column] = "text"
    # One format call: a second one would reset the other columns' formatter, and their escaping.
    styler = (
        shown.style.format(_NUMBER_FORMATS, escape="html", na_rep="–")
        .format_index(escape="html", axis=1)
        .relabel_index([_HTML_COLUMNS[c] for c in shown.columns], axis=1)
        .hide(axis="index")
        .set_td_classes(classes)
        .set_uuid("claims")
    )
    styler.cell_ids = False
    table = styler.to_html()
    counts = shown["verdict"].value_counts()
    summary = ", ".join(
        f"{counts[v]} {v}" for v in ("supported", "contradicted", "inconclusive", NOT_RUN) if v in counts
    )
    body = [
        f"<style>{_CLAIM_CSS}</style>",
        '<p class="note">Each claim\'s effect with a 95 % interval over training seeds and test volumes '
        "(crossed jackknife): supported when the interval lies wholly on the claimed side of the threshold, "
        "contradicted when wholly on the other, else inconclusive. The half-width is about the smallest effect "
        "this run could decide.</p>",
        f'<p class="summary">{html.escape(summary or "no claims")}</p>',
        table,
    ]
    if decided:
        body.append(f'<p class="summary">{html.escape(decided)}</p>')
    return html_page("The studies' claims", body)


def write_claims_html(
    claims_table: pd.DataFrame, path: str | os.PathLike, decided: str | None = None
) -> None:
    """:func:`claims_html` written atomically."""
    write_text_atomic(path, claims_html(claims_table, decided))
