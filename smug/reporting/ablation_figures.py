"""One figure per ablation experiment, drawn from ``results/tables/ablations.csv``.

- ``tradeoff``: clean PSNR against attacked PSNR, one line per method through its variants (each
  point labelled with its setting), the references as single points; one panel per attack.
- ``bars``: clean and attacked PSNR per model with 95 % intervals; with Weighted SMUG diagnostics,
  a panel of the learned weights' spread.
- ``backbones``: clean PSNR against attacked PSNR with 95 % intervals, one colour per method and
  one marker per backbone (``snakemake backbones``); one panel per attack.
- ``sensitivity``: the measured sensitivity ``||f(y + e) - f(y)|| / ||e||`` against the radius of
  ``e`` (worst case solid, random dashed) and per model at the largest radius, the largest denoiser
  output norms, and clean PSNR.

Attacked scores are shown at the middle of each attack's eps grid (:func:`middle_levels`), named
in each panel's title. Unhealthy models are drawn hollow and marked "(unhealthy)".
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from smug.reporting.ablation_tables import DIAGNOSTIC, middle_levels, scored_rows
from smug.study import FAMILIES, PERTURBATION_LEVELS, method_family, method_label
from smug.reporting.plots import save_figure

FIGURE_KINDS = ("tradeoff", "bars", "sensitivity", "backbones")
# The marker of each backbone in the backbones figure.
BACKBONE_MARKERS = {"modl": "o", "varnet": "s", "ista": "^"}
BACKBONE_LABELS = {"modl": "MoDL", "varnet": "E2E-VarNet", "ista": "ISTA-Net+"}
# How the backbones figure names a method: the same method on every backbone, so not by MoDL's name.
BACKBONE_METHOD_LABELS = {
    "modl": "vanilla",
    "modl_pgd": "adversarial training (PGD)",
    "diffusion": "diffusion prior (attacks transferred)",
}


def _name(row) -> str:
    """A model's display name: ``SMUG sigma=0.02``, or the reference's label."""
    label = method_label(row["method"])
    text = label if row["role"] == "reference" else f"{label} {row['setting']}"
    return text if row["healthy"] else f"{text} (unhealthy)"


def _models(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per model, in table order, with its display name."""
    models = rows.drop_duplicates("model")[["model", "method", "setting", "role", "healthy"]].copy()
    models["name"] = [_name(row) for _, row in models.iterrows()]
    return models.reset_index(drop=True)


def _value(rows: pd.DataFrame, model: str, perturbation: str, level: float | None = None) -> pd.Series | None:
    own = rows[(rows["model"] == model) & (rows["perturbation"] == perturbation)]
    if level is not None:
        own = own[np.isclose(own["level"].astype(float), level)]
    return None if own.empty else own.iloc[0]


def _bar(
    ax, y: float, value: float, color, text: str, at: float | None = None, left: float = 0.0, **style
) -> None:
    """A horizontal bar from ``left`` to ``value``, its ``text`` printed right of ``at`` (its end)."""
    ax.barh(y, value - left, left=left, color=color, edgecolor="black", linewidth=0.5, **style)
    ax.annotate(
        text,
        (value if at is None else at, y),
        xytext=(3, 0),
        textcoords="offset points",
        va="center",
        fontsize=7,
    )


def _panel_title(perturbation: str, level: float) -> str:
    """``pgd_kspace_linf`` over ``eps = 0.01`` (the level's meaning is in PERTURBATION_LEVELS)."""
    name = PERTURBATION_LEVELS.get(perturbation, "level").split(" ", 1)[0]
    return f"{perturbation}\n{name} = {level:g}"


def plot_tradeoff(table: pd.DataFrame, experiment: str, figure: Figure) -> None:
    rows = scored_rows(table, experiment)
    levels = middle_levels(rows)
    models = _models(rows)
    colors = dict(zip(models["method"].unique(), sns.color_palette("colorblind", models["method"].nunique())))
    axes = figure.subplots(1, max(len(levels), 1), squeeze=False)[0]
    for ax, (perturbation, level) in zip(axes, levels.items()):
        for method, group in models.groupby("method", sort=False):
            points = []
            for _, model in group.iterrows():
                clean, attacked = _value(rows, model["model"], "clean"), _value(
                    rows, model["model"], perturbation, level
                )
                if clean is not None and attacked is not None:
                    points.append((clean["mean"], attacked["mean"], model))
            if not points:
                continue
            variants = [p for p in points if p[2]["role"] == "variant"]
            marker = "o" if variants else "s"
            if len(variants) > 1:
                ax.plot(
                    [p[0] for p in variants], [p[1] for p in variants], "-", color=colors[method], alpha=0.6
                )
            for x, y, model in points:
                face = colors[method] if model["healthy"] else "none"
                ax.plot(x, y, marker, color=colors[method], markerfacecolor=face, markersize=7)
                text = model["setting"] if model["role"] == "variant" else method_label(method)
                ax.annotate(text, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
            ax.plot([], [], marker, color=colors[method], label=method_label(method))
        ax.set_title(_panel_title(perturbation, level), fontsize=9)
        ax.set_xlabel("clean PSNR (dB)")
        ax.set_ylabel("attacked PSNR (dB)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)


def plot_bars(table: pd.DataFrame, experiment: str, figure: Figure) -> None:
    rows = scored_rows(table, experiment)
    levels = {"clean": None, **middle_levels(rows)}
    models = _models(rows)
    spread = table[(table["experiment"] == experiment) & (table["perturbation"] == "weight_max")]
    panels = len(levels) + (1 if not spread.empty else 0)
    axes = figure.subplots(1, panels, squeeze=False)[0]
    colors = sns.color_palette("colorblind", len(models))
    y = np.arange(len(models))
    for ax, (perturbation, level) in zip(axes, levels.items()):
        shown = rows[rows["perturbation"] == perturbation]
        if level is not None:
            shown = shown[np.isclose(shown["level"].astype(float), level)]
        # Bars start at the axis' left edge, so a negative PSNR is a short bar, not one pointing left.
        left = float(shown["ci_low"].min()) - 1.5 if not shown.empty else 0.0
        for i, model in models.iterrows():
            row = _value(rows, model["model"], perturbation, level)
            if row is None:
                continue
            err = [[row["mean"] - row["ci_low"]], [row["ci_high"] - row["mean"]]]
            hatch = None if model["healthy"] else "//"
            _bar(
                ax,
                i,
                row["mean"],
                colors[i],
                f"{row['mean']:.2f}",
                at=row["ci_high"],
                left=left,
                xerr=err,
                hatch=hatch,
            )
        ax.set_title("clean" if level is None else _panel_title(perturbation, level), fontsize=9)
        ax.set_xlabel("PSNR (dB)")
        if not shown.empty:
            ax.set_xlim(left, float(shown["ci_high"].max()) + 1.5)
        ax.set_yticks(y, models["name"] if ax is axes[0] else [""] * len(models), fontsize=8)
        ax.invert_yaxis()
        ax.grid(axis="x", alpha=0.3)
    if not spread.empty:
        ax = axes[-1]
        for i, model in models.iterrows():
            own = spread[spread["model"] == model["model"]]
            if not own.empty:
                value = float(own["mean"].iloc[0])
                _bar(ax, i, value, colors[i], f"{value:.3f}")
        ax.axvline(1.0, color="black", linestyle=":", linewidth=1)
        ax.set_xlim(0.9, max(1.2, float(spread["mean"].max()) * 1.15))
        ax.set_yticks(y, [""] * len(models))
        ax.invert_yaxis()
        ax.set_title("largest weight x M\n(1 = uniform)", fontsize=9)


def plot_sensitivity(table: pd.DataFrame, experiment: str, figure: Figure) -> None:
    own = table[table["experiment"] == experiment]
    measured = own[own["protocol"] == DIAGNOSTIC]
    models = _models(own)
    models = models[models["model"].isin(measured["model"])].reset_index(drop=True)
    if models.empty:
        raise ValueError(f"ablation {experiment!r}: no diagnostics to plot (set diagnostics: true)")
    colors = sns.color_palette("colorblind", len(models))
    ax_sens, ax_bars, ax_norm, ax_clean = figure.subplots(1, 4, width_ratios=[1.2, 1, 1, 0.8])
    for i, model in models.iterrows():
        mine = measured[(measured["model"] == model["model"]) & (measured["metric"] == "mean")]
        for kind, style in (("sensitivity_worst", "-o"), ("sensitivity_random", "--")):
            curve = mine[mine["perturbation"] == kind].sort_values("level")
            ax_sens.plot(
                curve["level"],
                curve["mean"],
                style,
                color=colors[i],
                markersize=4,
                label=model["name"] if kind == "sensitivity_worst" else None,
            )
    ax_sens.set_xlabel("||e|| / ||y||")
    ax_sens.set_ylabel("||f(y+e) - f(y)|| / ||e||")
    ax_sens.set_title("sensitivity (solid: worst case, dashed: random)", fontsize=9)
    ax_sens.legend(fontsize=7)
    ax_sens.grid(alpha=0.3)
    norms = measured[measured["perturbation"] == "denoiser_output_norm"]
    top = norms["level"].max()
    y = np.arange(len(models))
    for i, model in models.iterrows():
        mine = measured[(measured["model"] == model["model"]) & (measured["metric"] == "mean")]
        at_top = mine[np.isclose(mine["level"].astype(float), top)]
        for kind, offset, hatch in (("sensitivity_worst", -0.2, None), ("sensitivity_random", 0.2, "..")):
            value = at_top.loc[at_top["perturbation"] == kind, "mean"]
            if len(value):
                shown = float(value.iloc[0])
                _bar(ax_bars, i + offset, shown, colors[i], f"{shown:.1f}", height=0.4, hatch=hatch)
    ax_bars.set_yticks(y, models["name"], fontsize=7)
    ax_bars.invert_yaxis()
    ax_bars.set_title(
        f"sensitivity at ||e|| = {top:g} ||y||\n(plain: worst case, dotted: random)", fontsize=9
    )
    for i, model in models.iterrows():
        mine = norms[norms["model"] == model["model"]]
        clean = mine[mine["level"] == 0.0]["mean"]
        worst = mine[mine["level"] == top]["mean"]
        ax_norm.barh(i - 0.2, float(clean.iloc[0]) if len(clean) else 0, height=0.4, color=colors[i])
        ax_norm.barh(
            i + 0.2,
            float(worst.iloc[0]) if len(worst) else 0,
            height=0.4,
            color=colors[i],
            hatch="..",
            edgecolor="black",
            linewidth=0.5,
        )
    target = measured[measured["perturbation"] == "target_norm"]["mean"]
    if len(target):
        ax_norm.axvline(
            float(target.max()), color="black", linestyle=":", linewidth=1, label="largest ||x_gt||"
        )
        ax_norm.legend(fontsize=7)
    ax_norm.set_yticks(y, [""] * len(models))
    ax_norm.invert_yaxis()
    ax_norm.set_title(
        f"largest ||D(.)||: clean (plain), under\nworst-case e at {top:g} ||y|| (dotted)", fontsize=9
    )
    scored = scored_rows(table, experiment)
    for i, model in models.iterrows():
        row = _value(scored, model["model"], "clean")
        if row is not None:
            ax_clean.barh(i, row["mean"], color=colors[i], hatch=None if model["healthy"] else "//")
    ax_clean.set_yticks(y, [""] * len(models))
    ax_clean.invert_yaxis()
    clean_values = scored[scored["perturbation"] == "clean"]["mean"]
    if len(clean_values):
        ax_clean.set_xlim(clean_values.min() - 2, clean_values.max() + 1)
    ax_clean.set_title("clean PSNR (dB): the cost", fontsize=9)


def backbone_of_setting(setting: str) -> str:
    """The backbone a backbones-table row's setting names (``backbone=varnet, lambda_rec=10`` ->
    ``varnet``)."""
    key, _, value = setting.split(", ")[0].partition("=")
    if key != "backbone" or not value:
        raise ValueError(f"{setting!r} names no backbone (expected backbone=<name>)")
    return value


def _backbone_marker(model) -> str:
    """A backbones-figure point's marker: its backbone's, or a baseline's family marker."""
    if model["role"] == "reference":
        family = method_family(model["method"])
        return FAMILIES[family].marker if family is not None else "D"
    return BACKBONE_MARKERS.get(backbone_of_setting(model["setting"]), "D")


def plot_backbones(table: pd.DataFrame, experiment: str, figure: Figure) -> None:
    """Clean against attacked PSNR of every method on every backbone, with 95 % intervals."""
    rows = scored_rows(table, experiment)
    # A panel per attack; a baseline's random-noise rows have no counterpart on the backbones.
    levels = middle_levels(rows[rows["protocol"] != "random noise"])
    models = _models(rows)
    methods = list(models["method"].unique())
    colors = dict(zip(methods, sns.color_palette("colorblind", len(methods))))
    # The baselines with no backbone (the diffusion prior: role reference) keep their family's marker.
    baseline = models["role"] == "reference"
    backbones = list(dict.fromkeys(backbone_of_setting(s) for s in models[~baseline]["setting"]))
    axes = figure.subplots(1, max(len(levels), 1), squeeze=False)[0]
    for ax, (perturbation, level) in zip(axes, levels.items()):
        for _, model in models.iterrows():
            clean = _value(rows, model["model"], "clean")
            attacked = _value(rows, model["model"], perturbation, level)
            if clean is None or attacked is None:
                continue
            color = colors[model["method"]]
            ax.errorbar(
                clean["mean"],
                attacked["mean"],
                xerr=[[clean["mean"] - clean["ci_low"]], [clean["ci_high"] - clean["mean"]]],
                yerr=[[attacked["mean"] - attacked["ci_low"]], [attacked["ci_high"] - attacked["mean"]]],
                fmt=_backbone_marker(model),
                color=color,
                markerfacecolor=color if model["healthy"] else "none",
                markersize=7,
                elinewidth=0.8,
                capsize=2,
            )
        ax.set_title(_panel_title(perturbation, level), fontsize=9)
        ax.set_xlabel("clean PSNR (dB)")
        ax.set_ylabel("attacked PSNR (dB)")
        ax.grid(alpha=0.3)
    for method in methods:
        label = BACKBONE_METHOD_LABELS.get(method, method_label(method))
        axes[0].plot([], [], "-", color=colors[method], label=label)
    for backbone in backbones:
        label = BACKBONE_LABELS.get(backbone, backbone)
        axes[0].plot([], [], BACKBONE_MARKERS.get(backbone, "D"), color="gray", label=label)
    axes[0].legend(fontsize=7)


_PLOTTERS = {
    "tradeoff": plot_tradeoff,
    "bars": plot_bars,
    "sensitivity": plot_sensitivity,
    "backbones": plot_backbones,
}


def plot_experiment(
    table: pd.DataFrame, experiment: str, kind: str, path_png: str | os.PathLike, path_pdf: str | os.PathLike
) -> None:
    """Draw one experiment's figure of ``kind`` (:data:`FIGURE_KINDS`) and save it atomically."""
    if kind not in _PLOTTERS:
        raise ValueError(f"unknown ablation figure {kind!r}; valid: {', '.join(FIGURE_KINDS)}")
    if not (table["experiment"] == experiment).any():
        raise ValueError(f"the ablation table has no rows of experiment {experiment!r}")
    width = {"tradeoff": 4.2, "bars": 3.6, "sensitivity": 4.0, "backbones": 4.2}[kind]
    panels = 4 if kind == "sensitivity" else max(len(middle_levels(scored_rows(table, experiment))), 1) + 1
    models = table.loc[table["experiment"] == experiment, "model"].nunique()
    height = 0.45 * models + 2.5 if kind == "bars" else 4.2
    figure = Figure(figsize=(width * panels, height), layout="constrained")
    _PLOTTERS[kind](table, experiment, figure)
    figure.suptitle("Every method on every backbone" if kind == "backbones" else f"Ablation: {experiment}")
    save_figure(figure, path_png, path_pdf)
