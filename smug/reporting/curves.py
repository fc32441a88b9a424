"""Metric curves: each model's score against a perturbation's level, one panel per metric, methods
grouped by family (colour by group, marker by family), with intervals over seeds and volumes.
"""

from __future__ import annotations

import os
from typing import Mapping

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from smug.study import group_methods, method_label
from smug.reporting.plots import REFERENCE_COLOR, REFERENCE_MODEL, group_colors, model_marker, save_figure

# How far the curve figures' y-axis reaches below the lowest of the models' best scores (their clean
# score, for attacks); lower values are drawn as a downward marker on the bottom edge, with the
# panel's lowest value printed, instead of stretching the axis (to -40 dB, say, for one curve).
CLIP_SPAN = {"PSNR": 10.0, "SSIM": 0.3, "NMSE": None}


def curve_y_range(best_scores: list[float], values: list[float], span: float | None) -> tuple[float, float]:
    """The y-limits of one metric's panels: all ``values`` (the means drawn), but reaching at most
    ``span`` below the lowest of the models' ``best_scores`` (no limit when ``span`` is None)."""
    values = [v for v in values if np.isfinite(v)]
    if not values:
        return (0.0, 1.0)
    low, high = min(values), max(values)
    best = [b for b in best_scores if np.isfinite(b)]
    if span is not None and best:
        low = max(low, min(best) - span)
    pad = 0.06 * (high - low) if high > low else 0.5 * (abs(high) or 1.0)
    return (low - pad, high + pad)


def plot_metric_curves(
    table,
    panels: Mapping[str, str | None],
    path_png: str | os.PathLike,
    path_pdf: str | os.PathLike,
    xlabel: Mapping[str, str],
    metrics: tuple[str, ...] = ("PSNR", "SSIM"),
    include_clean: bool = True,
    marks: Mapping[str, tuple[float, str]] | None = None,
) -> Figure:
    """Metric vs perturbation level per model, mean with its 95 % band over seeds and test volumes, one row of panels
    per model family (unrolled networks, U-Nets, CS/untrained/zero-filled), so no curve hides another
    family's; zero-filled is repeated in grey in every family's panels as the common reference.

    With several perturbations, rows are (family, metric) and columns perturbations; with one, rows
    are families and columns metrics. Every panel of a metric shares one y-range (:func:`curve_y_range`):
    values below it are drawn as ▼ on the bottom edge with the curve's lowest value printed.

    Args:
        table: robustness table (columns of :data:`smug.reporting.tables.ROBUSTNESS_COLUMNS`).
        panels: perturbation drawn solid -> its random-noise counterpart drawn dashed (or None).
        path_png, path_pdf: output files.
        xlabel: perturbation -> x-axis label.
        metrics: metrics drawn.
        include_clean: start every curve at the model's clean score (level 0); off for shifts,
            whose levels are not perturbation sizes.
        marks: perturbation -> (level, label) drawn as a vertical line, e.g. the training acceleration.
    """
    panels = {p: n for p, n in panels.items() if (table["perturbation"] == p).any()}
    if not panels:
        raise ValueError("none of the requested perturbations is in the table")
    marks = marks or {}
    curves = _curves(table, panels, metrics, include_clean)
    groups = group_methods({key[3] for key in curves})
    ranges = {metric: _metric_range(curves, metric) for metric in metrics}

    multi = len(panels) > 1
    columns = list(panels) if multi else list(metrics)
    row_keys = [(title, members, m) for title, members in groups for m in (metrics if multi else (None,))]
    with sns.axes_style("whitegrid"):
        figure = Figure(figsize=(3.0 * len(columns) + 2.4, 2.0 * len(row_keys) + 0.9), layout="constrained")
        axes = figure.subplots(len(row_keys), len(columns), squeeze=False, sharex="col")
        clipped_any = False
        for r, (group, members, row_metric) in enumerate(row_keys):
            colors = group_colors(members)
            reference = REFERENCE_MODEL not in members and any(k[3] == REFERENCE_MODEL for k in curves)
            for c, column in enumerate(columns):
                perturbation = column if multi else next(iter(panels))
                metric = row_metric if multi else column
                ax = axes[r, c]
                drawn = [(m, style) for m in members for style in ("-", "--")]
                if reference:
                    drawn.append((REFERENCE_MODEL, ":"))
                clipped_any |= _draw_panel(ax, curves, perturbation, metric, drawn, colors, ranges[metric])
                levels = sorted(
                    {float(v) for k, part in curves.items() if k[0] == perturbation for v in part["level"]}
                )
                _level_axis(ax, perturbation, levels, marks, include_clean, first_row=r == 0)
                if r == 0:
                    ax.set_title(column, fontsize=8)
                if r == len(row_keys) - 1:
                    ax.set_xlabel(xlabel.get(perturbation, "level"), fontsize=8)
                ax.set_ylabel(f"{group}\n{metric}" if c == 0 else metric, fontsize=8)
                ax.tick_params(labelsize=7)
            if row_metric in (None, metrics[0]):
                _group_legend(axes[r, -1], group, members, colors, reference)
        _style_legend(figure, panels, marks, clipped_any)
    save_figure(figure, path_png, path_pdf)
    return figure


Curves = dict[tuple[str, str, str, str], pd.DataFrame]


def _curves(
    table: pd.DataFrame, panels: Mapping[str, str | None], metrics: tuple[str, ...], include_clean: bool
) -> Curves:
    """Every curve to draw, keyed ``(perturbation, "-" or "--", metric, model)`` (dashed: the
    perturbation's random-noise counterpart), its rows sorted by level, from the clean score on when
    ``include_clean``."""
    curves: Curves = {}
    for perturbation, noise in panels.items():
        for metric in metrics:
            rows = table[table["metric"] == metric]
            for model in sorted(rows["model"].unique()):
                own = rows[rows["model"] == model]
                clean = own[own["perturbation"] == "clean"]
                for name, style in ((perturbation, "-"), (noise, "--")):
                    part = own[own["perturbation"] == name] if name else own.iloc[0:0]
                    if part.empty:
                        continue
                    if include_clean:
                        part = pd.concat([clean, part])
                    curves[(perturbation, style, metric, model)] = part.sort_values("level")
    return curves


def _metric_range(curves: Curves, metric: str) -> tuple[float, float]:
    """The shared y-range of one metric's panels (:func:`curve_y_range`)."""
    drawn = [c for key, c in curves.items() if key[2] == metric]
    best = {}
    for key, c in curves.items():
        if key[2] == metric and len(c):
            best[key[3]] = max(best.get(key[3], -np.inf), float(c["mean"].max()))
    values = [float(v) for c in drawn for v in c["mean"]]
    return curve_y_range(list(best.values()), values, CLIP_SPAN.get(metric))


def _draw_panel(
    ax, curves: Curves, perturbation: str, metric: str, drawn: list, colors: dict, y_range
) -> bool:
    """One panel's curves (``drawn``: (model, line style), ``:`` the grey reference) with their bands;
    values below the axis become a ▼ on the bottom edge per curve and level (stacked when several
    curves leave at one level), the panel's lowest value printed once. Returns whether any did."""
    low, high = y_range
    ax.set_ylim(low, high)
    height = high - low
    stacked: dict[float, int] = {}
    lowest_off_axis: tuple[float, float, float, tuple] | None = None  # (value, x, y, colour)
    for model, style in drawn:
        key = (perturbation, "-" if style == ":" else style, metric, model)
        if key not in curves:
            continue
        part = curves[key]
        color = REFERENCE_COLOR if style == ":" else colors[model]
        marker = model_marker(model)
        x, mean = part["level"].to_numpy(float), part["mean"].to_numpy(float)
        ax.plot(x, mean, linestyle=style, marker=marker, ms=3, lw=1.1 if style == ":" else 1.4, color=color)
        if style != ":":
            ax.fill_between(x, part["ci_low"], part["ci_high"], color=color, alpha=0.1, lw=0)
        for xi, value in zip(x[mean < low], mean[mean < low]):
            k = stacked.get(float(xi), 0)
            stacked[float(xi)] = k + 1
            y = low + (0.03 + 0.045 * k) * height
            ax.plot([xi], [y], marker="v", ms=4, color=color, ls="none", clip_on=False, zorder=5)
            if lowest_off_axis is None or value < lowest_off_axis[0]:
                lowest_off_axis = (float(value), float(xi), y, color)
    if lowest_off_axis is None:
        return False
    value, xi, _, color = lowest_off_axis
    top = low + (0.03 + 0.045 * (stacked[xi] - 1)) * height
    ax.annotate(
        f"min {value:.3g}",
        (xi, top),
        xytext=(0, 5),
        textcoords="offset points",
        fontsize=6,
        color="0.15",
        ha="center",
        va="bottom",
    )
    return True


def _level_axis(
    ax, perturbation: str, levels: list[float], marks: Mapping, include_clean: bool, first_row: bool
) -> None:
    """The x-axis of a panel: a marked level as a dashed line (labelled in the first row), and a
    shift's settings (2x, 4x; 1, 3 unrolls) ticked exactly."""
    if perturbation in marks:
        level, label = marks[perturbation]
        ax.axvline(level, color="0.25", ls=(0, (4, 2)), lw=0.9, zorder=1)
        if first_row:
            # The label on the side of the line with room: left of it when it is the right end.
            right = bool(levels) and level >= (levels[0] + levels[-1]) / 2
            ax.annotate(
                label,
                (level, 1.0),
                xycoords=("data", "axes fraction"),
                xytext=(-3 if right else 3, -3),
                textcoords="offset points",
                fontsize=6,
                va="top",
                ha="right" if right else "left",
                color="0.25",
            )
    if not include_clean and len(levels) <= 8:
        ax.set_xticks(levels)
        suffix = "x" if perturbation == "acceleration" else ""
        ax.set_xticklabels([f"{v:g}{suffix}" for v in levels])
    else:
        ax.locator_params(axis="x", nbins=5)


def _group_legend(ax, group: str, members: list[str], colors: dict, reference: bool) -> None:
    """A family group's legend beside its row: each model's colour and marker, and the reference."""
    handles = [
        Line2D(
            [],
            [],
            color=colors[m],
            marker=model_marker(m),
            ms=4,
            label=method_label(m),
        )
        for m in members
    ]
    if reference:
        label = f"{method_label(REFERENCE_MODEL)} (reference)"
        handles.append(Line2D([], [], color=REFERENCE_COLOR, ls=":", marker="X", ms=4, label=label))
    ax.legend(
        handles=handles,
        loc="upper left",
        bbox_to_anchor=(1.02, 1.0),
        fontsize=7,
        title=group,
        title_fontsize=7,
        frameon=False,
    )


def _style_legend(figure: Figure, panels: Mapping, marks: Mapping, clipped_any: bool) -> None:
    """The figure's legend of line styles: attack and random noise, values below the axis, marked
    levels and the bands."""
    style_handles = []
    if any(n for n in panels.values()):
        style_handles.append(Line2D([], [], color="0.2", ls="-", label="solid = attack"))
        style_handles.append(
            Line2D([], [], color="0.2", ls="--", label="dashed = random noise of the same norm")
        )
    if clipped_any:
        label = "below the axis (panel's lowest value printed)"
        style_handles.append(Line2D([], [], color="0.2", marker="v", ls="none", label=label))
    for perturbation, (_, label) in marks.items():
        if perturbation in panels:
            style_handles.append(Line2D([], [], color="0.25", ls=(0, (4, 2)), lw=0.9, label=label))
    style_handles.append(Line2D([], [], color="none", label="bands: 95 % interval over seeds and volumes"))
    figure.legend(
        handles=style_handles, loc="outside lower center", ncols=len(style_handles), fontsize=7, frameon=False
    )
