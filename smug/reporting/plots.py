"""What every figure shares: saving, the models' styles (colour by family group, marker by family)
and the sampling-mask figure. The figures themselves: :mod:`~smug.reporting.curves`,
:mod:`~smug.reporting.image_figures`, :mod:`~smug.reporting.shift_figures` and the ablation and
claim figures.

Figures are drawn on a bare :class:`matplotlib.figure.Figure` (Agg canvas, no pyplot), so
plotting touches no global backend or state, and are saved atomically (:mod:`smug.utils.io`); the PDF
carries no creation date, so re-running a job reproduces it byte for byte.
"""

from __future__ import annotations

import os
from typing import Mapping

import numpy as np
import seaborn as sns
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from smug.utils import atomic_path
from smug.study import FAMILIES, group_methods, method_family

PNG_DPI = 150


def save_figure(figure: Figure, path_png: str | os.PathLike, path_pdf: str | os.PathLike) -> None:
    """Save ``figure`` as PNG (150 dpi) and PDF, each atomically."""
    FigureCanvasAgg(figure)
    # The temporary names end in ".part", so the format must be given explicitly.
    with atomic_path(path_png) as tmp:
        figure.savefig(tmp, format="png", dpi=PNG_DPI)
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
def model_marker(model: str) -> str:
    """A model's marker in the figures: its family's (smug.study.methods.FAMILIES), "o" if unregistered."""
    family = method_family(model)
    return FAMILIES[family].marker if family is not None else "o"


# Colour-blind palette without its grey (index 7), which marks zero-filled, the reference.
GROUP_COLORS = [sns.color_palette("colorblind", 10)[i] for i in (0, 1, 3, 2, 4, 5, 6, 8, 9)]
REFERENCE_MODEL = "zero_filled"
REFERENCE_COLOR = (0.45, 0.45, 0.45)


def group_colors(models: list[str]) -> dict[str, tuple]:
    """One colour per model of a panel group; zero-filled is always grey."""
    colors, k = {}, 0
    for model in models:
        if model == REFERENCE_MODEL:
            colors[model] = REFERENCE_COLOR
        else:
            colors[model] = GROUP_COLORS[k % len(GROUP_COLORS)]
            k += 1
    return colors


def model_styles(models) -> dict[str, tuple[tuple, str]]:
    """(colour, marker) per model: colours distinct within each family group, markers per family,
    so no two models share both; in group order (:func:`smug.study.methods.group_methods`)."""
    styles = {}
    for _, members in group_methods(models):
        colors = group_colors(members)
        for model in members:
            styles[model] = (colors[model], model_marker(model))
    return styles
