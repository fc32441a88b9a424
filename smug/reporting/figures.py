"""The robustness figures, assembled from the pipeline's outputs (drawing lives in smug.reporting.plots)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from smug.attacks import load_attack
from smug.data import open_hdf5
from smug.mri import fft2c, ifft2c
from smug.study import NOISE_COUNTERPART, PERTURBATION_LEVELS
from smug.reporting.image_figures import plot_feature_crops, plot_image_grid, plot_perturbations
from smug.reporting.curves import plot_metric_curves
from smug.reporting.shift_figures import plot_shift_scatter
from smug.evaluation import feature_scores
from smug.reporting.tables import shift_summary

# Half-width of the zoomed crops around small features, in pixels.
_CROP_HALF = 8


def _read_recon(path: Path, key: str) -> np.ndarray:
    if not path.exists():
        raise FileNotFoundError(f"reconstruction {path} does not exist")
    with open_hdf5(path) as f:
        return f[key][()]


def draw_all_figures(
    *,
    table: str | os.PathLike,
    recon_root: str | os.PathLike,
    models: Sequence[str],
    grid_attack: str,
    grid_level: float,
    attack_files: Sequence[str],
    out_dir: str | os.PathLike,
    train_acceleration: float | None = None,
    train_unrolls: int | None = None,
) -> None:
    """Draw every figure of :data:`FIGURES` into ``out_dir`` (``.png`` and ``.pdf``).

    ``train_acceleration`` and ``train_unrolls``, the settings the models were trained with, are
    marked on the sampling-rate and unrolling shift figures (not marked when None)."""
    out = Path(out_dir)
    data = pd.read_csv(table)
    _curve_figures(data, out, train_acceleration, train_unrolls)
    root = Path(recon_root)
    _image_grid(root, models, grid_attack, grid_level, out)
    _perturbation_figure(attack_files, out)
    plot_shift_scatter(shift_summary(data), out / "anatomy_shift.png", out / "anatomy_shift.pdf")
    crops, windows, scores, feature_level = feature_crops(root, models)
    plot_feature_crops(
        crops,
        windows,
        out / "small_features.png",
        out / "small_features.pdf",
        scores=scores,
        rates=detection_rates(data, feature_level),
        size=feature_level,
    )


def _curve_figures(
    data: pd.DataFrame, out: Path, train_acceleration: float | None, train_unrolls: int | None
) -> None:
    """The robustness curves, and the sampling-rate and unrolling shifts with the trained setting marked."""
    attacks_present = {
        p: NOISE_COUNTERPART[p] for p in NOISE_COUNTERPART if (data["perturbation"] == p).any()
    }
    plot_metric_curves(
        data,
        attacks_present,
        out / "robustness_curves.png",
        out / "robustness_curves.pdf",
        PERTURBATION_LEVELS,
    )
    trained = {
        "acceleration": (
            None
            if train_acceleration is None
            else (train_acceleration, f"trained at {train_acceleration:g}x")
        ),
        "unrolls": (
            None if train_unrolls is None else (train_unrolls, f"trained with {train_unrolls:g} unrolls")
        ),
    }
    for name, perturbation in (("acceleration_shift", "acceleration"), ("unroll_shift", "unrolls")):
        marks = {perturbation: trained[perturbation]} if trained[perturbation] else {}
        plot_metric_curves(
            data,
            {perturbation: None},
            out / f"{name}.png",
            out / f"{name}.pdf",
            PERTURBATION_LEVELS,
            include_clean=False,
            marks=marks,
        )


def _image_grid(root: Path, models: Sequence[str], grid_attack: str, grid_level: float, out: Path) -> None:
    """The middle slice of the first test volume: each model's clean and attacked reconstruction."""
    target_dir = root / models[0] / "target"
    fname = sorted(p.name for p in target_dir.iterdir())[0]
    target_volume = _read_recon(target_dir / fname, "reconstruction_rss")
    index = target_volume.shape[0] // 2
    rows = {}
    for model in models:
        clean = _read_recon(root / model / "clean" / "0" / fname, "reconstruction")[index]
        attacked_path = root / model / grid_attack / f"{grid_level:g}" / fname
        attacked = (
            _read_recon(attacked_path, "reconstruction")[index] if attacked_path.exists() else clean * np.nan
        )
        rows[model] = (clean, attacked)
    plot_image_grid(
        target_volume[index],
        rows,
        out / "image_grid.png",
        out / "image_grid.pdf",
        f"{grid_attack} eps={grid_level:g}",
    )


def _perturbation_figure(attack_files: Sequence[str], out: Path) -> None:
    """Each attack file's last level as k-space and image (RSS of the coil images of F^H e)."""
    perturbations = {}
    for path in attack_files:
        delta, attrs = load_attack(path)[-1]
        first = delta[0]
        if attrs["domain"] == "kspace":
            kspace = first[0]
            image = ifft2c(first).abs().pow(2).sum(0).sqrt()  # RSS of the coil images of F^H e
        else:
            image = first
            kspace = fft2c(first)
        perturbations[f"{attrs['model']} {attrs['attack']} eps={attrs['eps']:g}"] = (
            kspace.numpy(),
            image.numpy(),
        )
    if not perturbations:
        raise ValueError("no attack files given for the perturbation figure")
    plot_perturbations(perturbations, out / "perturbations.png", out / "perturbations.pdf")


def feature_crops(
    recon_root: Path, models: Sequence[str]
) -> tuple[dict[str, list[np.ndarray]], list[np.ndarray], dict[str, list[dict]], float | None]:
    """Crops around the small features of the first test volume's middle slice: the target and
    each model's reconstruction (from ``{model}/small_feature/``), each feature's window, each
    model's :func:`smug.evaluation.small_features.feature_scores` of every feature on that slice (the
    evaluation's own criterion, on the whole image as it scores), and the feature size drawn."""
    folder = recon_root / models[0] / "small_feature"
    if not (folder / "windows.h5").exists():
        return {"small features not measured (evaluation.small_features: null)": []}, [], {}, None
    with open_hdf5(folder / "windows.h5") as f:
        fname = sorted(f.keys())[0]
        labels = f[fname][()]
    index = labels.shape[0] // 2
    level = sorted((p.name for p in folder.iterdir() if p.is_dir() and p.name != "target"), key=float)[0]
    images = {"target": _read_recon(folder / "target" / fname, "reconstruction_rss")[index]}
    for model in models:
        images[model] = _read_recon(recon_root / model / "small_feature" / level / fname, "reconstruction")[
            index
        ]
    crops: dict[str, list[np.ndarray]] = {label: [] for label in images}
    windows = []
    scores: dict[str, list[dict]] = {model: [] for model in models}
    height, width = labels.shape[1:]
    for feature in range(1, int(labels[index].max()) + 1):
        window = labels[index] == feature
        rows, cols = np.nonzero(window)
        top = int(np.clip((rows.min() + rows.max()) // 2 - _CROP_HALF, 0, max(height - 2 * _CROP_HALF, 0)))
        left = int(np.clip((cols.min() + cols.max()) // 2 - _CROP_HALF, 0, max(width - 2 * _CROP_HALF, 0)))
        box = (slice(top, top + 2 * _CROP_HALF), slice(left, left + 2 * _CROP_HALF))
        for label, image in images.items():
            crops[label].append(image[box])
        for model in models:
            scores[model].append(feature_scores(images[model], images["target"], window))
        windows.append(window[box])
    return crops, windows, scores, float(level)


def detection_rates(table: pd.DataFrame, level: float | None) -> dict[str, float]:
    """Each model's share of features detected over the whole test set at ``level`` (the table's
    ``feature_detected`` mean), for the small-feature figure's column titles."""
    rows = table[(table["perturbation"] == "small_feature") & (table["metric"] == "feature_detected")]
    if level is not None:
        rows = rows[np.isclose(rows["level"], level)]
    return dict(zip(rows["model"], rows["mean"].astype(float)))
