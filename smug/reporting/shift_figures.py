"""The distribution-shift figure: each model's score in distribution against out of distribution."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from smug.study import method_label
from smug.reporting.plots import model_styles, save_figure


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
