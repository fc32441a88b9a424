"""Figures of the pipeline.

Figures are drawn on a bare :class:`matplotlib.figure.Figure` (Agg canvas, no pyplot), so
plotting touches no global backend or state, and are saved atomically (:mod:`smug.io`); the PDF
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

from smug.io import atomic_path

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


def _palette(names: list[str]) -> dict[str, tuple]:
    """Distinct colours per model: the colour-blind palette has only 10, tab20 serves beyond."""
    palette = "colorblind" if len(names) <= 10 else "tab20"
    return dict(zip(names, sns.color_palette(palette, len(names))))


def plot_metric_curves(
    table,
    panels: Mapping[str, str | None],
    path_png: str | os.PathLike,
    path_pdf: str | os.PathLike,
    xlabel: Mapping[str, str],
    metrics: tuple[str, ...] = ("PSNR", "SSIM"),
    include_clean: bool = True,
) -> None:
    """Metric vs perturbation level per model, mean with its bootstrap 95 % band.

    Args:
        table: robustness table (columns of :data:`smug.tables.ROBUSTNESS_COLUMNS`).
        panels: perturbation drawn solid -> its random-noise counterpart drawn dashed (or None);
            one column of panels per entry, one row per metric.
        path_png, path_pdf: output files.
        xlabel: perturbation -> x-axis label.
        metrics: rows of panels.
        include_clean: start every curve at the model's clean score (level 0); off for shifts,
            whose levels are not perturbation sizes.
    """
    panels = {p: n for p, n in panels.items() if (table["perturbation"] == p).any()}
    if not panels:
        raise ValueError("none of the requested perturbations is in the table")
    models = sorted(table["model"].unique())
    colors = _palette(models)
    with sns.axes_style("whitegrid"):
        figure = Figure(figsize=(3.2 * len(panels) + 1.6, 2.6 * len(metrics)), layout="constrained")
        axes = figure.subplots(len(metrics), len(panels), squeeze=False)
        for col, (perturbation, noise) in enumerate(panels.items()):
            for row, metric in enumerate(metrics):
                ax = axes[row, col]
                for model in models:
                    rows = table[(table["model"] == model) & (table["metric"] == metric)]
                    clean = rows[rows["perturbation"] == "clean"]
                    for name, style in ((perturbation, "-"), (noise, "--")):
                        part = rows[rows["perturbation"] == name]
                        if part.empty:
                            continue
                        if include_clean:
                            # Every attack curve starts from the model's clean score at level 0.
                            part = pd.concat([clean, part])
                        part = part.sort_values("level")
                        ax.plot(part["level"], part["mean"], style, marker="o", ms=3, color=colors[model])
                        ax.fill_between(part["level"], part["ci_low"], part["ci_high"], color=colors[model], alpha=0.15)
                ax.set_title(perturbation + ("  (dashed: random noise)" if noise else ""), fontsize=8)
                ax.set_xlabel(xlabel.get(perturbation, "level"), fontsize=8)
                ax.set_ylabel(metric, fontsize=8)
                ax.tick_params(labelsize=7)
                ax.locator_params(axis="x", nbins=5)
        handles = [Line2D([], [], color=colors[m], marker="o", ms=3, label=m) for m in models]
        figure.legend(handles=handles, loc="outside right center", fontsize=7, title="model", title_fontsize=7)
    save_figure(figure, path_png, path_pdf)


def plot_image_grid(
    target: np.ndarray,
    rows: Mapping[str, tuple[np.ndarray, np.ndarray]],
    path_png: str | os.PathLike,
    path_pdf: str | os.PathLike,
    attacked_label: str,
    error_scale: float = 0.2,
) -> None:
    """The SMUG paper's kind of figure: per model, clean and attacked reconstructions and their
    error maps, with one grey scale for all images and one for all error maps.

    Args:
        target: ground-truth magnitude ``(h, w)``.
        rows: model -> (clean magnitude, attacked magnitude), each ``(h, w)``.
        attacked_label: column title of the attacked reconstructions.
        error_scale: top of the error colour scale, as a fraction of the target's maximum.
    """
    vmax = float(target.max())
    columns = ["clean", "|error| clean", attacked_label, "|error| attacked"]
    figure = Figure(figsize=(1.6 * 4 + 1.6, 1.6 * (len(rows) + 1)), layout="constrained")
    axes = figure.subplots(len(rows) + 1, 4, squeeze=False)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_frame_on(False)
    axes[0, 0].imshow(target, cmap="gray", vmin=0, vmax=vmax)
    axes[0, 0].set_title("ground truth", fontsize=8)
    for r, (model, (clean, attacked)) in enumerate(rows.items(), start=1):
        images = [clean, np.abs(clean - target), attacked, np.abs(attacked - target)]
        for c, image in enumerate(images):
            is_error = c % 2 == 1
            shown = axes[r, c].imshow(
                image, cmap="inferno" if is_error else "gray", vmin=0, vmax=error_scale * vmax if is_error else vmax
            )
            if r == 1:
                axes[r, c].set_title(columns[c], fontsize=8)
        axes[r, 0].set_ylabel(model, fontsize=8)
        axes[r, 0].set_frame_on(True)
    figure.colorbar(shown, ax=axes[:, 3], shrink=0.5, label="|error|")
    save_figure(figure, path_png, path_pdf)


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
        summary: rows of :func:`smug.tables.shift_summary`; an empty one draws a note instead.
    """
    with sns.axes_style("whitegrid"):
        figure = Figure(figsize=(3.6 * len(metrics) + 1.6, 3.4), layout="constrained")
        axes = figure.subplots(1, len(metrics), squeeze=False)[0]
        models = sorted(summary["model"].unique())
        colors = _palette(models)
        for ax, metric in zip(axes, metrics):
            part = summary[summary["metric"] == metric].dropna(subset=["in_distribution", "anatomy_shift"])
            ax.set_xlabel(f"{metric}, training anatomy", fontsize=8)
            ax.set_ylabel(f"{metric}, shifted anatomy", fontsize=8)
            ax.tick_params(labelsize=7)
            if part.empty:
                ax.text(0.5, 0.5, "anatomy shift not measured\n(data.shift_anatomy: null)", ha="center",
                        va="center", transform=ax.transAxes, fontsize=8)
                continue
            x, y = part["in_distribution"].to_numpy(), part["anatomy_shift"].to_numpy()
            for _, row in part.iterrows():
                ax.plot(row["in_distribution"], row["anatomy_shift"], "o", ms=5, color=colors[row["model"]])
                if np.isfinite(row["ttt"]):
                    ax.annotate("", xy=(row["in_distribution"], row["ttt"]),
                                xytext=(row["in_distribution"], row["anatomy_shift"]),
                                arrowprops={"arrowstyle": "->", "color": colors[row["model"]], "lw": 1})
            low, high = min(x.min(), y.min()), max(x.max(), y.max())
            pad = 0.05 * (high - low or 1.0)
            span = np.array([low - pad, high + pad])
            ax.plot(span, span, ":", color="grey", lw=1, label="identity")
            if len(part) >= 2 and np.ptp(x) > 0:
                slope, intercept = np.polyfit(x, y, 1)
                ax.plot(span, slope * span + intercept, "-", color="black", lw=1,
                        label=f"fit: slope {slope:.2f}")
            ax.legend(fontsize=7, loc="upper left")
            ax.set_title(f"{metric}: anatomy shift (arrows: test-time training)", fontsize=8)
        handles = [Line2D([], [], color=colors[m], marker="o", ls="", ms=5, label=m) for m in models]
        if handles:
            figure.legend(handles=handles, loc="outside right center", fontsize=7, title="model", title_fontsize=7)
    save_figure(figure, path_png, path_pdf)


def plot_feature_crops(
    crops: Mapping[str, list[np.ndarray]],
    windows: list[np.ndarray],
    path_png: str | os.PathLike,
    path_pdf: str | os.PathLike,
) -> None:
    """Zoomed crops around inserted small features: one row per feature, the target (with the
    feature window outlined) then each model, on the target crop's grey scale.

    Args:
        crops: label -> one magnitude crop per feature, the target first.
        windows: per feature, the bool window within its crop.
    """
    labels = list(crops)
    num_rows = len(windows)
    if num_rows == 0:
        figure = Figure(figsize=(4, 1.5), layout="constrained")
        ax = figure.subplots()
        ax.set_axis_off()
        ax.text(0.5, 0.5, labels[0] if labels else "no small features", ha="center", va="center", fontsize=8)
        save_figure(figure, path_png, path_pdf)
        return
    figure = Figure(figsize=(1.5 * len(labels) + 0.4, 1.6 * max(num_rows, 1)), layout="constrained")
    axes = figure.subplots(max(num_rows, 1), len(labels), squeeze=False)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    for r in range(num_rows):
        vmax = float(crops[labels[0]][r].max())
        for c, label in enumerate(labels):
            axes[r, c].imshow(crops[label][r], cmap="gray", vmin=0, vmax=vmax)
            if r == 0:
                axes[r, c].set_title(label, fontsize=7)
        rows, cols = np.nonzero(windows[r])
        axes[r, 0].add_patch(
            Rectangle((cols.min() - 0.5, rows.min() - 0.5), np.ptp(cols) + 1, np.ptp(rows) + 1,
                      fill=False, edgecolor="red", lw=0.8)
        )
        axes[r, 0].set_ylabel(f"feature {r + 1}", fontsize=7)
    save_figure(figure, path_png, path_pdf)
