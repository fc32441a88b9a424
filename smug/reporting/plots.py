"""Figures of the pipeline.

Figures are drawn on a bare :class:`matplotlib.figure.Figure` (Agg canvas, no pyplot), so
plotting touches no global backend or state, and are saved atomically (:mod:`smug.utils.io`); the PDF
carries no creation date, so re-running a job reproduces it byte for byte.
"""

from __future__ import annotations

import os
from typing import Mapping

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle

from smug.utils import atomic_path
from smug.study import group_methods, method_family, method_label

_PNG_DPI = 150


def save_figure(figure: Figure, path_png: str | os.PathLike, path_pdf: str | os.PathLike) -> None:
    """Save ``figure`` as PNG (150 dpi) and PDF, each atomically."""
    FigureCanvasAgg(figure)
    # The temporary names end in ".part", so the format must be given explicitly.
    with atomic_path(path_png) as tmp:
        figure.savefig(tmp, format="png", dpi=_PNG_DPI)
    with atomic_path(path_pdf) as tmp:
        figure.savefig(tmp, format="pdf", metadata={"CreationDate": None})


def plot_masks(
    masks: Mapping[str, np.ndarray],
    height: int,
    path_png: str | os.PathLike,
    path_pdf: str | os.PathLike,
    titles: Mapping[str, str] | None = None,
) -> None:
    """Draw each column mask as its 2-D (H x W) k-space sampling pattern, one row per mask.

    Args:
        masks: label -> (W,) bool column mask, drawn top to bottom in iteration order.
        height: number of k-space rows ``H`` (every row of a column mask is sampled alike).
        path_png, path_pdf: output files.
        titles: label -> panel title; the label itself where missing.
    """
    if not masks:
        raise ValueError("plot_masks needs at least one mask")
    if height < 1:
        raise ValueError(f"height {height} must be positive")
    titles = titles or {}
    columns = {label: np.asarray(mask, dtype=bool) for label, mask in masks.items()}
    for label, mask in columns.items():
        if mask.ndim != 1 or mask.size == 0:
            raise ValueError(f"mask {label!r} has shape {mask.shape}, expected (W,)")

    widest = max(mask.size for mask in columns.values())
    panel_width = 4.0
    # Every row of a column mask is alike, so tall panels would add nothing: cap the height.
    panel_height = float(np.clip(panel_width * height / widest, 1.0, 2.0)) + 0.6
    figure = Figure(figsize=(panel_width, panel_height * len(columns)), layout="constrained")
    axes = figure.subplots(len(columns), 1, squeeze=False)[:, 0]
    for ax, (label, mask) in zip(axes, columns.items()):
        pattern = np.broadcast_to(mask[None, :], (height, mask.size))
        ax.imshow(pattern, cmap="gray", vmin=0, vmax=1, interpolation="nearest", aspect="auto")
        ax.set_title(titles.get(label, label), fontsize=8)
        ax.set_xlabel("phase encoding (column)", fontsize=7)
        ax.set_ylabel("readout (row)", fontsize=7)
        ax.tick_params(labelsize=6)
    save_figure(figure, path_png, path_pdf)


# Marker per method family in the curve figures (the panels group families already; markers keep
# them apart in print and for colour-blind readers).
_FAMILY_MARKERS = {"unrolled": "o", "unet": "s", "classical": "^", "untrained": "D", "zero_filled": "X"}
# Colour-blind palette without its grey (index 7), which marks zero-filled, the reference.
_GROUP_COLORS = [sns.color_palette("colorblind", 10)[i] for i in (0, 1, 3, 2, 4, 5, 6, 8, 9)]
_REFERENCE_MODEL = "zero_filled"
_REFERENCE_COLOR = (0.45, 0.45, 0.45)
# How far the curve figures' y-axis reaches below the lowest of the models' best scores (their clean
# score, for attacks); lower values are drawn as a downward marker on the bottom edge, with the
# panel's lowest value printed, instead of stretching the axis (to -40 dB, say, for one curve).
CLIP_SPAN = {"PSNR": 10.0, "SSIM": 0.3, "NMSE": None}


def _group_colors(models: list[str]) -> dict[str, tuple]:
    """One colour per model of a panel group; zero-filled is always grey."""
    colors, k = {}, 0
    for model in models:
        if model == _REFERENCE_MODEL:
            colors[model] = _REFERENCE_COLOR
        else:
            colors[model] = _GROUP_COLORS[k % len(_GROUP_COLORS)]
            k += 1
    return colors


def model_styles(models) -> dict[str, tuple[tuple, str]]:
    """(colour, marker) per model: colours distinct within each family group, markers per family,
    so no two models share both; in group order (:func:`smug.study.methods.group_methods`)."""
    styles = {}
    for _, members in group_methods(models):
        colors = _group_colors(members)
        for model in members:
            styles[model] = (colors[model], _FAMILY_MARKERS.get(method_family(model) or "", "o"))
    return styles


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
    curves: dict[tuple[str, str, str, str], pd.DataFrame] = {}
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
    groups = group_methods({key[3] for key in curves})
    ranges = {}
    for metric in metrics:
        drawn = [c for key, c in curves.items() if key[2] == metric]
        best = {}
        for key, c in curves.items():
            if key[2] == metric and len(c):
                best[key[3]] = max(best.get(key[3], -np.inf), float(c["mean"].max()))
        values = [float(v) for c in drawn for v in c["mean"]]
        ranges[metric] = curve_y_range(list(best.values()), values, CLIP_SPAN.get(metric))

    multi = len(panels) > 1
    columns = list(panels) if multi else list(metrics)
    row_keys = [(title, members, m) for title, members in groups for m in (metrics if multi else (None,))]
    with sns.axes_style("whitegrid"):
        figure = Figure(figsize=(3.0 * len(columns) + 2.4, 2.0 * len(row_keys) + 0.9), layout="constrained")
        axes = figure.subplots(len(row_keys), len(columns), squeeze=False, sharex="col")
        clipped_any = False
        for r, (group, members, row_metric) in enumerate(row_keys):
            colors = _group_colors(members)
            reference = _REFERENCE_MODEL not in members and any(k[3] == _REFERENCE_MODEL for k in curves)
            for c, column in enumerate(columns):
                perturbation = column if multi else next(iter(panels))
                metric = row_metric if multi else column
                ax = axes[r, c]
                low, high = ranges[metric]
                ax.set_ylim(low, high)
                height = high - low
                drawn = [(m, style) for m in members for style in ("-", "--")]
                if reference:
                    drawn.append((_REFERENCE_MODEL, ":"))
                stacked: dict[float, int] = {}
                lowest_off_axis: tuple[float, float, float, tuple] | None = None  # (value, x, y, colour)
                for model, style in drawn:
                    key = (perturbation, "-" if style == ":" else style, metric, model)
                    if key not in curves:
                        continue
                    part = curves[key]
                    color = _REFERENCE_COLOR if style == ":" else colors[model]
                    marker = _FAMILY_MARKERS.get(method_family(model) or "", "o")
                    x, mean = part["level"].to_numpy(float), part["mean"].to_numpy(float)
                    ax.plot(
                        x,
                        mean,
                        linestyle=style,
                        marker=marker,
                        ms=3,
                        lw=1.1 if style == ":" else 1.4,
                        color=color,
                    )
                    if style != ":":
                        ax.fill_between(x, part["ci_low"], part["ci_high"], color=color, alpha=0.1, lw=0)
                    # Values below the axis: a ▼ on the bottom edge per curve and level (stacked when
                    # several curves leave at one level), the panel's lowest value printed once.
                    for xi, value in zip(x[mean < low], mean[mean < low]):
                        clipped_any = True
                        k = stacked.get(float(xi), 0)
                        stacked[float(xi)] = k + 1
                        y = low + (0.03 + 0.045 * k) * height
                        ax.plot([xi], [y], marker="v", ms=4, color=color, ls="none", clip_on=False, zorder=5)
                        if lowest_off_axis is None or value < lowest_off_axis[0]:
                            lowest_off_axis = (float(value), float(xi), y, color)
                if lowest_off_axis is not None:
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
                levels = sorted(
                    {float(v) for k, part in curves.items() if k[0] == perturbation for v in part["level"]}
                )
                if perturbation in marks:
                    level, label = marks[perturbation]
                    ax.axvline(level, color="0.25", ls=(0, (4, 2)), lw=0.9, zorder=1)
                    if r == 0:
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
                    # A shift's levels are settings (2x, 4x; 1, 3 unrolls): tick exactly those.
                    ax.set_xticks(levels)
                    suffix = "x" if perturbation == "acceleration" else ""
                    ax.set_xticklabels([f"{v:g}{suffix}" for v in levels])
                else:
                    ax.locator_params(axis="x", nbins=5)
                if r == 0:
                    ax.set_title(column, fontsize=8)
                if r == len(row_keys) - 1:
                    ax.set_xlabel(xlabel.get(perturbation, "level"), fontsize=8)
                ax.set_ylabel(f"{group}\n{metric}" if c == 0 else metric, fontsize=8)
                ax.tick_params(labelsize=7)
            handles = [
                Line2D(
                    [],
                    [],
                    color=colors[m],
                    marker=_FAMILY_MARKERS.get(method_family(m) or "", "o"),
                    ms=4,
                    label=method_label(m),
                )
                for m in members
            ]
            if reference:
                handles.append(
                    Line2D(
                        [],
                        [],
                        color=_REFERENCE_COLOR,
                        ls=":",
                        marker="X",
                        ms=4,
                        label=f"{method_label(_REFERENCE_MODEL)} (reference)",
                    )
                )
            if row_metric in (None, metrics[0]):
                axes[r, -1].legend(
                    handles=handles,
                    loc="upper left",
                    bbox_to_anchor=(1.02, 1.0),
                    fontsize=7,
                    title=group,
                    title_fontsize=7,
                    frameon=False,
                )
        style_handles = []
        if any(n for n in panels.values()):
            style_handles.append(Line2D([], [], color="0.2", ls="-", label="solid = attack"))
            style_handles.append(
                Line2D([], [], color="0.2", ls="--", label="dashed = random noise of the same norm")
            )
        if clipped_any:
            style_handles.append(
                Line2D(
                    [],
                    [],
                    color="0.2",
                    marker="v",
                    ls="none",
                    label="below the axis (panel's lowest value printed)",
                )
            )
        for perturbation, (_, label) in marks.items():
            if perturbation in panels:
                style_handles.append(Line2D([], [], color="0.25", ls=(0, (4, 2)), lw=0.9, label=label))
        style_handles.append(
            Line2D([], [], color="none", label="bands: 95 % interval over seeds and volumes")
        )
        figure.legend(
            handles=style_handles,
            loc="outside lower center",
            ncols=len(style_handles),
            fontsize=7,
            frameon=False,
        )
    save_figure(figure, path_png, path_pdf)
    return figure


def tile_scores(target: np.ndarray, image: np.ndarray) -> dict[str, float]:
    """PSNR, SSIM and NMSE of one shown image against the target shown beside it, with the project's
    metrics (:mod:`smug.evaluation.metrics`) on exactly those pixels; the peak and data range are the shown
    target's maximum, as fastMRI uses the volume's."""
    from smug.evaluation import nmse, psnr, ssim

    target, image = np.asarray(target, dtype=np.float64), np.asarray(image, dtype=np.float64)
    if not np.isfinite(image).all():
        return {"PSNR": float("nan"), "SSIM": float("nan"), "NMSE": float("nan")}
    return {
        "PSNR": psnr(target, image),
        "SSIM": ssim(target[None], image[None]),
        "NMSE": nmse(target, image),
    }


def _tile_text(ax, text: str) -> None:
    ax.text(
        0.03,
        0.03,
        text,
        transform=ax.transAxes,
        fontsize=6.5,
        color="white",
        ha="left",
        va="bottom",
        linespacing=1.15,
        bbox={"boxstyle": "round,pad=0.25", "facecolor": "black", "alpha": 0.6, "lw": 0},
    )


def plot_image_grid(
    target: np.ndarray,
    rows: Mapping[str, tuple[np.ndarray, np.ndarray]],
    path_png: str | os.PathLike,
    path_pdf: str | os.PathLike,
    attacked_label: str,
    error_scale: float = 0.2,
) -> Figure:
    """The SMUG paper's kind of figure: per model, clean and attacked reconstructions and their
    error maps, with one grey scale for all images and one for all error maps. Every reconstruction
    tile carries its PSNR and SSIM and every error map its NMSE (:func:`tile_scores`, on the pixels
    shown); a missing attacked reconstruction is labelled as such.

    Args:
        target: ground-truth magnitude ``(h, w)``.
        rows: model -> (clean magnitude, attacked magnitude), each ``(h, w)``; an attacked image of
            NaNs means the model was not attacked.
        attacked_label: column title of the attacked reconstructions.
        error_scale: top of the error colour scale, as a fraction of the target's maximum.
    """
    vmax = float(target.max())
    columns = ["clean", "|error| clean", attacked_label, "|error| attacked"]
    figure = Figure(figsize=(1.7 * 4 + 1.6, 1.7 * (len(rows) + 1)), layout="constrained")
    axes = figure.subplots(len(rows) + 1, 4, squeeze=False)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_frame_on(False)
    axes[0, 0].imshow(target, cmap="gray", vmin=0, vmax=vmax)
    axes[0, 0].set_title("ground truth", fontsize=8)
    # One wide cell beside the ground truth says what the tiles' numbers are.
    for ax in axes[0, 1:]:
        ax.remove()
    note = figure.add_subplot(axes[0, 0].get_gridspec()[0, 1:])
    note.set_axis_off()
    note.text(
        0.04,
        0.5,
        "Numbers on each tile (smug.evaluation.metrics), against the ground truth on the pixels shown\n"
        "(peak and SSIM data range: its maximum): reconstructions PSNR and SSIM, error maps NMSE.",
        transform=note.transAxes,
        fontsize=7,
        va="center",
    )
    shown = None
    for r, (model, (clean, attacked)) in enumerate(rows.items(), start=1):
        for c, image in enumerate((clean, attacked)):
            ax_image, ax_error = axes[r, 2 * c], axes[r, 2 * c + 1]
            if not np.isfinite(image).all():
                _tile_text(ax_image, "not attacked")
                continue
            ax_image.imshow(image, cmap="gray", vmin=0, vmax=vmax)
            shown = ax_error.imshow(np.abs(image - target), cmap="inferno", vmin=0, vmax=error_scale * vmax)
            scores = tile_scores(target, image)
            _tile_text(ax_image, f"PSNR {scores['PSNR']:.2f} dB\nSSIM {scores['SSIM']:.3f}")
            _tile_text(ax_error, f"NMSE {scores['NMSE']:.3g}")
        if r == 1:
            for c, title in enumerate(columns):
                axes[r, c].set_title(title, fontsize=8)
        axes[r, 0].set_ylabel(method_label(model), fontsize=8)
        axes[r, 0].set_frame_on(True)
    if shown is not None:
        figure.colorbar(shown, ax=list(axes[1:, 3]), shrink=0.6, label="|error|")
    save_figure(figure, path_png, path_pdf)
    return figure


def plot_perturbations(
    perturbations: Mapping[str, tuple[np.ndarray, np.ndarray]],
    path_png: str | os.PathLike,
    path_pdf: str | os.PathLike,
) -> None:
    """Worst-case perturbations in k-space (log magnitude, coil 0) and image space (magnitude; the
    root-sum-of-squares of the coil images for k-space perturbations).

    Args:
        perturbations: label -> (k-space ``(H, W)`` complex, image ``(h, w)`` complex).
    """
    figure = Figure(figsize=(2 * 2.2 + 0.8, 2.2 * len(perturbations)), layout="constrained")
    axes = figure.subplots(len(perturbations), 2, squeeze=False)
    for r, (label, (kspace, image)) in enumerate(perturbations.items()):
        shown_k = axes[r, 0].imshow(np.log10(np.abs(kspace) + 1e-8), cmap="viridis")
        shown_i = axes[r, 1].imshow(np.abs(image), cmap="magma")
        axes[r, 0].set_title(f"{label}: k-space (log10 |.|)", fontsize=7)
        axes[r, 1].set_title(f"{label}: image-domain magnitude", fontsize=7)
        figure.colorbar(shown_k, ax=axes[r, 0], shrink=0.7)
        figure.colorbar(shown_i, ax=axes[r, 1], shrink=0.7)
        for ax in axes[r]:
            ax.set_xticks([])
            ax.set_yticks([])
    save_figure(figure, path_png, path_pdf)


def plot_shift_scatter(
    summary: pd.DataFrame,
    path_png: str | os.PathLike,
    path_pdf: str | os.PathLike,
    metrics: tuple[str, ...] = ("PSNR", "SSIM"),
) -> None:
    """The robustness study's distribution-shift figure: out- vs in-distribution score per model,
    with their least-squares line and the identity, and an arrow from each adapted model's shifted
    score to its score after test-time training.

    Args:
        summary: rows of :func:`smug.reporting.tables.shift_summary`; an empty one draws a note instead.
    """
    with sns.axes_style("whitegrid"):
        figure = Figure(figsize=(3.6 * len(metrics) + 1.6, 3.4), layout="constrained")
        axes = figure.subplots(1, len(metrics), squeeze=False)[0]
        styles = model_styles(summary["model"].unique())
        colors = {model: color for model, (color, _) in styles.items()}
        for ax, metric in zip(axes, metrics):
            part = summary[summary["metric"] == metric].dropna(subset=["in_distribution", "anatomy_shift"])
            ax.set_xlabel(f"{metric}, training anatomy", fontsize=8)
            ax.set_ylabel(f"{metric}, shifted anatomy", fontsize=8)
            ax.tick_params(labelsize=7)
            if part.empty:
                ax.text(
                    0.5,
                    0.5,
                    "anatomy shift not measured\n(data.shift_anatomy: null)",
                    ha="center",
                    va="center",
                    transform=ax.transAxes,
                    fontsize=8,
                )
                continue
            x, y = part["in_distribution"].to_numpy(), part["anatomy_shift"].to_numpy()
            for _, row in part.iterrows():
                ax.plot(
                    row["in_distribution"],
                    row["anatomy_shift"],
                    styles[row["model"]][1],
                    ms=5,
                    color=colors[row["model"]],
                    ls="none",
                )
                if np.isfinite(row["ttt"]):
                    ax.annotate(
                        "",
                        xy=(row["in_distribution"], row["ttt"]),
                        xytext=(row["in_distribution"], row["anatomy_shift"]),
                        arrowprops={"arrowstyle": "->", "color": colors[row["model"]], "lw": 1},
                    )
            low, high = min(x.min(), y.min()), max(x.max(), y.max())
            pad = 0.05 * (high - low or 1.0)
            span = np.array([low - pad, high + pad])
            ax.plot(span, span, ":", color="grey", lw=1, label="identity")
            if len(part) >= 2 and np.ptp(x) > 0:
                slope, intercept = np.polyfit(x, y, 1)
                ax.plot(
                    span, slope * span + intercept, "-", color="black", lw=1, label=f"fit: slope {slope:.2f}"
                )
            ax.legend(fontsize=7, loc="upper left")
            ax.set_title(f"{metric}: anatomy shift (arrows: test-time training)", fontsize=8)
        handles = [
            Line2D([], [], color=color, marker=marker, ls="", ms=5, label=method_label(m))
            for m, (color, marker) in styles.items()
        ]
        if handles:
            figure.legend(
                handles=handles, loc="outside right center", fontsize=7, title="model", title_fontsize=7
            )
    save_figure(figure, path_png, path_pdf)


def plot_feature_crops(
    crops: Mapping[str, list[np.ndarray]],
    windows: list[np.ndarray],
    path_png: str | os.PathLike,
    path_pdf: str | os.PathLike,
    scores: Mapping[str, list[Mapping]] | None = None,
    rates: Mapping[str, float] | None = None,
    size: float | None = None,
) -> Figure:
    """Zoomed crops around inserted small features: one row per feature, the target (with the
    feature window outlined) then each model, on the target crop's grey scale. Each model's tile is
    marked detected (green frame, ✓) or missed (red frame, ✗) with the contrast it recovered, and its
    column title gives its share of features detected over the test set.

    Args:
        crops: label -> one magnitude crop per feature, the target first.
        windows: per feature, the bool window within its crop.
        scores: model -> per feature, :func:`smug.evaluation.small_features.feature_scores` (``detected``,
            ``recovered_fraction``); tiles unmarked where missing.
        rates: model -> share of features detected over the test set (the table's ``feature_detected``).
        size: the feature size drawn, in pixels, for the title.
    """
    labels = list(crops)
    scores, rates = scores or {}, rates or {}
    num_rows = len(windows)
    if num_rows == 0:
        figure = Figure(figsize=(4, 1.5), layout="constrained")
        ax = figure.subplots()
        ax.set_axis_off()
        ax.text(0.5, 0.5, labels[0] if labels else "no small features", ha="center", va="center", fontsize=8)
        save_figure(figure, path_png, path_pdf)
        return figure
    figure = Figure(figsize=(1.6 * len(labels) + 0.4, 1.7 * num_rows + 0.7), layout="constrained")
    axes = figure.subplots(num_rows, len(labels), squeeze=False)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    for r in range(num_rows):
        vmax = float(crops[labels[0]][r].max())
        for c, label in enumerate(labels):
            ax = axes[r, c]
            ax.imshow(crops[label][r], cmap="gray", vmin=0, vmax=vmax)
            if r == 0:
                title = "target" if c == 0 else method_label(label)
                if label in rates and np.isfinite(rates[label]):
                    title += f"\n{100 * rates[label]:.0f} % detected (test set)"
                ax.set_title(title, fontsize=7)
            if c == 0 or label not in scores or r >= len(scores[label]):
                continue
            score = scores[label][r]
            detected = bool(score["detected"])
            color = "#1a7f37" if detected else "#cf222e"
            for spine in ax.spines.values():
                spine.set_edgecolor(color)
                spine.set_linewidth(2.5)
            fraction = score.get("recovered_fraction", float("nan"))
            text = ("✓ detected" if detected else "✗ missed") + (
                f", contrast {100 * fraction:.0f} %" if np.isfinite(fraction) else ""
            )
            ax.set_xlabel(text, fontsize=7, color=color, fontweight="bold", labelpad=2)
        rows, cols = np.nonzero(windows[r])
        axes[r, 0].add_patch(
            Rectangle(
                (cols.min() - 0.5, rows.min() - 0.5),
                np.ptp(cols) + 1,
                np.ptp(rows) + 1,
                fill=False,
                edgecolor="red",
                lw=0.8,
            )
        )
        axes[r, 0].set_ylabel(f"feature {r + 1}", fontsize=7)
    if scores:
        sized = f"{size:g}-pixel " if size is not None else ""
        figure.suptitle(
            f"Inserted {sized}features (red box on the target) on one test slice.\n"
            "Detected: recovered contrast (window minus ring) at least half the target's, as evaluated.",
            fontsize=7,
        )
    save_figure(figure, path_png, path_pdf)
    return figure
