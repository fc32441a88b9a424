"""Image figures: the grid of reconstructions under attack with each tile's scores, the perturbations
themselves, and crops around the inserted small features.
"""

from __future__ import annotations

import os
from typing import Mapping

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from smug.study import method_label
from smug.evaluation import tile_scores
from smug.reporting.plots import save_figure


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
            _mark_detection(ax, scores[label][r])
        _outline_window(axes[r, 0], windows[r])
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


def _mark_detection(ax, score: Mapping) -> None:
    """A model's tile framed green (detected, ✓) or red (missed, ✗), with the contrast it recovered."""
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


def _outline_window(ax, window: np.ndarray) -> None:
    """The feature's window outlined in red on the target's tile."""
    rows, cols = np.nonzero(window)
    ax.add_patch(
        Rectangle(
            (cols.min() - 0.5, rows.min() - 0.5),
            np.ptp(cols) + 1,
            np.ptp(rows) + 1,
            fill=False,
            edgecolor="red",
            lw=0.8,
        )
    )
