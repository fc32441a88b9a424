"""The results tables as self-contained HTML pages, for reading inside ``snakemake --report``.

Snakemake's report shows an ``.html`` output inline (in a frame), so each page carries its own
style and needs nothing else: the robustness table (one section per perturbation, models by family
as rows, levels as columns, ``mean ± std`` over seeds and test volumes, the best score of each column in
bold), the distribution-shift summary and the training-health table, where every unhealthy model's
row is marked and its failed checks listed. Every text taken from a table is escaped; numbers are
rounded per quantity (PSNR and dB gaps to 2 decimals, SSIM to 4, fractions as percentages). The page,
its style sheet and the table markup are :mod:`smug.reporting.html_page`.

The module needs only pandas (no torch), so rendering the pages is cheap.
"""

from __future__ import annotations

import html
import math
import os
from typing import Iterable

import numpy as np
import pandas as pd

from smug.study import ATTACKS, PERTURBATION_LEVELS, group_methods, method_label
from smug.reporting.html_page import (
    Markup,
    format_number,
    format_percent,
    html_page,
    html_table,
    is_finite,
    write_html,
)

# Metrics shown per perturbation, with how to print them; robustness.csv holds the rest (NMSE, CIs).
_METRICS = {
    "PSNR": ("PSNR (dB)", "number", 2, True),
    "SSIM": ("SSIM", "number", 4, True),
    "feature_error": ("feature error", "number", 3, False),
    "feature_detected": ("features detected", "percent", 0, True),
}
# Perturbations whose level carries no size (a clean or shifted reconstruction, a generator replay).
_LEVEL_FREE = ("clean", "anatomy_shift", "ttt_anatomy_shift")


def _model_header(model: str, flag: str = "") -> Markup:
    """A row header: the display name, a flag such as "unhealthy", and the name files use."""
    label = html.escape(method_label(model))
    flag_html = f' <span class="flag">{html.escape(flag)}</span>' if flag else ""
    return Markup(f'{label}{flag_html}<span class="name">{html.escape(model)}</span>')


def _grouped_rows(models: Iterable[str]) -> tuple[list[str], list[tuple[int, str]]]:
    ordered, headings = [], []
    for title, members in group_methods(models):
        headings.append((len(ordered), title))
        ordered += members
    return ordered, headings


def _perturbation_order(names: Iterable[str]) -> list[str]:
    """Clean first, then the attacks in the registry's order, generators, then the shifts."""
    attacks = list(ATTACKS)

    def rank(name: str) -> tuple[int, int, str]:
        if name == "clean":
            return (0, 0, name)
        if name in attacks:
            return (1, attacks.index(name), name)
        if name.startswith("generator_"):
            return (2, 0, name)
        shifts = ("acceleration", "unrolls", "anatomy_shift", "ttt_anatomy_shift", "small_feature")
        return (3, shifts.index(name), name) if name in shifts else (4, 0, name)

    return sorted(set(names), key=rank)


def level_label(perturbation: str, level: float) -> str:
    """How a level reads in a column title: ``eps 0.01``, ``4x``, ``8 unrolls``, ``3 px``; empty
    for perturbations whose level is no size (clean, anatomy shift, a generator's replay)."""
    if perturbation in _LEVEL_FREE or perturbation.startswith("generator_"):
        return ""
    if perturbation == "acceleration":
        return f"{level:g}x"
    if perturbation == "unrolls":
        return f"{level:g} unrolls"
    if perturbation == "small_feature":
        return f"{level:g} px"
    return f"eps {level:g}"


def _best_in(values: list[float], higher_is_better: bool) -> int | None:
    finite = [(v, i) for i, v in enumerate(values) if is_finite(v)]
    if len(finite) < 2:
        return None
    return (max if higher_is_better else min)(finite)[1]


def _anchor(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in name)


def robustness_html(table: pd.DataFrame, unhealthy: Iterable[str] = ()) -> str:
    """The robustness table (``results/tables/robustness.csv``) as one page: per perturbation, the
    models (grouped by family) against every level, ``mean ± std`` over seeds and test volumes of PSNR and
    SSIM (and of the small-feature scores), the best of each column in bold.

    Args:
        table: rows of :data:`smug.reporting.tables.ROBUSTNESS_COLUMNS`.
        unhealthy: models the training-health table found unhealthy; their rows are flagged.
    """
    if table.empty:
        raise ValueError("the robustness table has no rows")
    unhealthy = set(unhealthy)
    sections, contents = [], []
    for perturbation in _perturbation_order(table["perturbation"]):
        section = _perturbation_section(table[table["perturbation"] == perturbation], perturbation, unhealthy)
        if section:
            anchor = _anchor(perturbation)
            contents.append(f'<a href="#{anchor}">{html.escape(perturbation)}</a>')
            sections += section
    nav = [f"<nav>{' '.join(contents)}</nav>"]
    return html_page(
        "Robustness: scores per perturbation", [*_robustness_notes(table, unhealthy), *nav, *sections]
    )


def _perturbation_section(part: pd.DataFrame, perturbation: str, unhealthy: set[str]) -> list[str]:
    """One perturbation's heading, level note and table (models by family against its levels), or
    nothing when it has none of the page's metrics."""
    metrics = [m for m in _METRICS if (part["metric"] == m).any()]
    if not metrics:
        return []
    columns = [
        (m, level) for m in metrics for level in sorted(part.loc[part["metric"] == m, "level"].unique())
    ]
    labels = {c: level_label(perturbation, c[1]) for c in columns}
    titled = any(labels.values())
    header: list[str | tuple[str, str]] = ["Model"]
    header += [(_METRICS[m][0], labels[(m, level)]) if titled else _METRICS[m][0] for m, level in columns]
    cells = part.set_index(["model", "metric", "level"])[["mean", "std"]]
    models, headings = _grouped_rows(part["model"])
    means = [[cells["mean"].get((model, m, level), math.nan) for m, level in columns] for model in models]
    best = [_best_in([row[j] for row in means], _METRICS[m][3]) for j, (m, _) in enumerate(columns)]
    rows, classes = [], []
    for i, model in enumerate(models):
        row: list[object] = [_model_header(model, "unhealthy" if model in unhealthy else "")]
        row += [_score_cell(cells, (model, m, level), m) for m, level in columns]
        rows.append(row)
        classes.append([None] + ["best" if best[j] == i else None for j in range(len(columns))])
    protocol = str(part["protocol"].iloc[0]) if "protocol" in part else ""
    title = (
        f"{perturbation} — {protocol}" if protocol and protocol not in ("clean", "shift") else perturbation
    )
    section = [f'<h2 id="{_anchor(perturbation)}">{html.escape(title)}</h2>']
    if titled and perturbation in PERTURBATION_LEVELS:
        section.append(f'<p class="note">level: {html.escape(PERTURBATION_LEVELS[perturbation])}</p>')
    section.append(
        html_table(
            header,
            rows,
            row_classes=["unhealthy" if m in unhealthy else None for m in models],
            cell_classes=classes,
            groups=headings,
        )
    )
    return section


def _score_cell(cells: pd.DataFrame, key: tuple, metric: str) -> str:
    """``mean ± std`` of one model, metric and level, in the metric's format; a dash if unscored."""
    if key not in cells.index:
        return "–"
    mean, std = cells.loc[key, "mean"], cells.loc[key, "std"]
    _, kind, digits, _ = _METRICS[metric]
    if kind == "percent":
        return f"{format_percent(mean)} ± {format_percent(std)}"
    return f"{format_number(mean, digits)} ± {format_number(std, digits)}"


def _robustness_notes(table: pd.DataFrame, unhealthy: set[str]) -> list[str]:
    """What the page's numbers are, the run's config hash and commit, and the flagged models."""
    notes = [
        '<p class="note">Mean ± standard deviation over training seeds and test volumes; the best score of each '
        "column in bold (highest PSNR, SSIM and share of features detected; lowest feature error). NMSE and "
        "the 95 % intervals over seeds and volumes are in robustness.csv; each seed's own rows in "
        "robustness_by_seed.csv.</p>"
    ]
    provenance = [
        f"{name} {', '.join(sorted(map(str, table[name].unique())))}"
        for name in ("config_hash", "git_commit")
        if name in table
    ]
    if provenance:
        notes.append(f'<p class="note">{html.escape("; ".join(provenance))}</p>')
    if unhealthy & set(table["model"]):
        flagged = ", ".join(method_label(m) for m in sorted(unhealthy & set(table["model"])))
        notes.append(
            f'<p class="summary bad">Flagged unhealthy in the training-health table: {html.escape(flagged)}.</p>'
        )
    return notes


_SHIFT_COLUMNS = (
    ("in_distribution", "training anatomy"),
    ("anatomy_shift", "shifted anatomy"),
    ("ttt", "after test-time training"),
    ("gap", "gap"),
    ("gap_closed", "gap closed by TTT"),
)
_SHIFT_DIGITS = {"PSNR": 2, "SSIM": 4, "NMSE": 4}


def shift_html(summary: pd.DataFrame) -> str:
    """The distribution-shift summary (``results/tables/distribution_shift.csv``, rows of
    :func:`smug.reporting.tables.shift_summary`) as one page: per model and metric the score on the training
    anatomy, on the shifted one, after test-time training, the gap and the fraction of it closed."""
    title = "Distribution shift: training vs shifted anatomy"
    if summary.empty:
        return html_page(
            title,
            ['<p class="summary">Anatomy shift not measured (<code>data.shift_anatomy: null</code>).</p>'],
        )
    metrics = [m for m in ("PSNR", "SSIM", "NMSE") if (summary["metric"] == m).any()]
    header: list[str | tuple[str, str]] = ["Model"]
    header += [(f"{m} (dB)" if m == "PSNR" else m, name) for m in metrics for _, name in _SHIFT_COLUMNS]
    values = summary.set_index(["model", "metric"])
    models, headings = _grouped_rows(summary["model"])
    rows = []
    for model in models:
        row: list[object] = [_model_header(model)]
        for m in metrics:
            for column, _ in _SHIFT_COLUMNS:
                value = values[column].get((model, m), math.nan)
                row.append(
                    format_percent(value)
                    if column == "gap_closed"
                    else format_number(value, _SHIFT_DIGITS[m])
                )
        rows.append(row)
    note = (
        '<p class="note">Clean scores, mean over seeds and test volumes. gap = training-anatomy score − shifted score '
        "(signs flipped for NMSE, where lower is better, so a positive gap is always a loss); gap closed = "
        "(after TTT − shifted) / gap, for the models adapted by test-time training (– where not adapted or "
        "where there is no gap).</p>"
    )
    return html_page(title, [note, html_table(header, rows, groups=headings)])


HEALTH_LABELS = {
    "model": "Model",
    "kind": "Kind",
    "optimizer_steps": "Optimiser steps",
    "epochs": "Epochs",
    "lam": "λ (data consistency)",
    "val_psnr_reference": "Val. PSNR, reference (dB)",
    "val_psnr_init": "Val. PSNR, initial weights (dB)",
    "val_psnr_first": "Val. PSNR, first epoch (dB)",
    "val_psnr_best": "Val. PSNR, best epoch (dB)",
    "val_psnr_last": "Val. PSNR, last epoch (dB)",
    "best_epoch": "Best epoch",
    "denoiser_gain_db": "Denoiser gain (dB)",
    "test_psnr": "Test PSNR (dB)",
    "test_gain_over_zero_filled_db": "Gain over zero-filled (dB)",
    "worst_volume_gain_db": "Worst-volume gain (dB)",
    "gap_to_cs_tv_db": "Gap to CS-TV (dB)",
    "test_psnr_low_acceleration": "Test PSNR, lowest acceleration (dB)",
    "healthy": "Healthy",
    "failed_checks": "Failed checks",
}
_HEALTH_INTEGERS = ("optimizer_steps", "epochs", "best_epoch")


def _is_healthy(value: object) -> bool:
    """A ``healthy`` cell as pandas reads it back: a bool, or the text True/False."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, str) and value.strip() in ("True", "False"):
        return value.strip() == "True"
    raise ValueError(f"healthy must be True or False, got {value!r}")


def _health_value(column: str, value: object) -> str:
    if column in _HEALTH_INTEGERS:
        return f"{int(float(value))}" if is_finite(value) else "–"
    if column == "lam":
        return f"{float(value):.3g}" if is_finite(value) else "–"
    return format_number(value, 2)


def health_html(health: pd.DataFrame) -> str:
    """The training-health table (``results/tables/training_health.csv``, :data:`smug.reporting.health.COLUMNS`)
    as one page: a summary line naming the unhealthy models, then one row per model, unhealthy rows
    marked in red with a ✗ and each failed check listed; – where a check does not apply."""
    if health.empty:
        raise ValueError("the training-health table has no rows")
    missing = {"model", "healthy", "failed_checks"} - set(health.columns)
    if missing:
        raise ValueError(f"the training-health table lacks the columns {sorted(missing)}")
    duplicated = sorted(set(health.loc[health["model"].duplicated(), "model"]))
    if duplicated:
        raise ValueError(f"the training-health table lists {duplicated} more than once")
    verdicts = {row.model: _is_healthy(row.healthy) for row in health.itertuples()}
    numeric = [c for c in health.columns if c not in ("model", "kind", "healthy", "failed_checks")]
    # The verdict and its reasons first: they are what a reader looks for.
    columns = ["model", "healthy", "failed_checks", *(["kind"] if "kind" in health else []), *numeric]
    header = [HEALTH_LABELS.get(c, c.replace("_", " ")) for c in columns]
    by_model = health.set_index("model")
    models, headings = _grouped_rows(health["model"])
    rows, row_classes, cell_classes = [], [], []
    for model in models:
        record = by_model.loc[model]
        healthy = verdicts[model]
        row: list[object] = [_model_header(model, "" if healthy else "✗ unhealthy")]
        classes: list[str | None] = [None]
        for column in columns[1:]:
            value = record[column]
            if column == "kind":
                row.append(str(value))
                classes.append("text")
            elif column == "healthy":
                row.append("✓ yes" if healthy else "✗ no")
                classes.append("good" if healthy else "bad")
            elif column == "failed_checks":
                checks = (
                    [c.strip() for c in str(value).split(";") if c.strip()] if isinstance(value, str) else []
                )
                items = "".join(f"<li>{html.escape(c)}</li>" for c in checks)
                row.append(Markup(f'<ul class="checks">{items}</ul>') if checks else "")
                classes.append("text")
            else:
                row.append(_health_value(column, value))
                classes.append(None)
        rows.append(row)
        row_classes.append(None if healthy else "unhealthy")
        cell_classes.append(classes)
    bad = [m for m in models if not verdicts[m]]
    if bad:
        names = ", ".join(method_label(m) for m in bad)
        summary = (
            f'<p class="summary bad">{len(bad)} of {len(models)} models unhealthy: {html.escape(names)}.</p>'
        )
    else:
        summary = f'<p class="summary">All {len(models)} models passed every check that applies to them.</p>'
    note = (
        '<p class="note">A model is healthy when it passes every check of its kind (see the caption); '
        "– where a value does not apply to that kind.</p>"
    )
    table = html_table(header, rows, row_classes=row_classes, cell_classes=cell_classes, groups=headings)
    return html_page("Training health", [summary, note, table])


def unhealthy_models(health: pd.DataFrame) -> list[str]:
    """The models a training-health table marks unhealthy."""
    return [row.model for row in health.itertuples() if not _is_healthy(row.healthy)]


def write_html_tables(
    *,
    robustness: str | os.PathLike,
    distribution_shift: str | os.PathLike,
    training_health: str | os.PathLike,
    robustness_out: str | os.PathLike,
    distribution_shift_out: str | os.PathLike,
    training_health_out: str | os.PathLike,
) -> None:
    """Render the three results tables from their CSVs; the robustness page flags the models the
    health table marks unhealthy. Every page is rendered before any is written."""
    health = pd.read_csv(training_health)
    pages = {
        robustness_out: robustness_html(pd.read_csv(robustness), unhealthy_models(health)),
        distribution_shift_out: shift_html(pd.read_csv(distribution_shift)),
        training_health_out: health_html(health),
    }
    for path, page in pages.items():
        write_html(page, path)
