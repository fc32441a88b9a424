"""What the figures show: family panels with readable names, a readable y-range with off-axis
values marked, the training setting marked, scores on every image tile, detected features marked."""

from __future__ import annotations

import h5py
import numpy as np
import pandas as pd
import pytest

from smug.reporting import curve_y_range, detection_rates, feature_crops, plot_feature_crops, plot_image_grid
from smug.reporting import plot_metric_curves
from smug.study import NOISE_COUNTERPART, PERTURBATION_LEVELS
from smug.evaluation import nmse, psnr, ssim


def _texts(figure) -> list[str]:
    """Every text a figure draws: titles, labels, annotations, legend entries and titles."""
    texts = [t.get_text() for t in figure.texts]
    for legend in figure.legends:
        texts += [t.get_text() for t in legend.get_texts()]
    for ax in figure.axes:
        texts += [ax.get_title(), ax.get_xlabel(), ax.get_ylabel(), *(t.get_text() for t in ax.texts)]
        legend = ax.get_legend()
        if legend is not None:
            texts += [legend.get_title().get_text(), *(t.get_text() for t in legend.get_texts())]
    return texts


def _row(model, perturbation, level, metric, mean):
    return {
        "model": model,
        "perturbation": perturbation,
        "protocol": "",
        "level": level,
        "metric": metric,
        "mean": mean,
        "std": 0.1,
        "ci_low": mean - 0.2,
        "ci_high": mean + 0.2,
        "n_slices": 4,
    }


CLEAN = {"modl": 31.0, "smug": 30.5, "weighted_smug": 30.6, "unet": 30.0, "cs_tv": 29.0, "zero_filled": 25.0}


def _curve_table(collapse: float = -40.0) -> pd.DataFrame:
    """PSNR/SSIM under one attack and its noise; MoDL collapses to ``collapse`` dB at the largest eps."""
    rows = []
    for model, clean in CLEAN.items():
        rows += [_row(model, "clean", 0.0, "PSNR", clean), _row(model, "clean", 0.0, "SSIM", clean / 40)]
        for eps in (0.01, 0.02):
            attacked = collapse if (model == "modl" and eps == 0.02) else clean - 100 * eps
            rows += [
                _row(model, "pgd_kspace_linf", eps, "PSNR", attacked),
                _row(model, "pgd_kspace_linf", eps, "SSIM", clean / 40 - eps),
                _row(model, "noise_kspace_linf", eps, "PSNR", clean - 10 * eps),
                _row(model, "noise_kspace_linf", eps, "SSIM", clean / 40 - eps / 10),
            ]
        for acc in (2.0, 4.0, 8.0):
            rows += [
                _row(model, "acceleration", acc, "PSNR", clean + 4 - acc),
                _row(model, "acceleration", acc, "SSIM", (clean + 4 - acc) / 40),
            ]
    return pd.DataFrame(rows)


def test_y_range_keeps_the_clean_scores_and_clips_a_collapse():
    low, high = curve_y_range([31.0, 29.0], [31.0, 29.0, 28.0, -40.0], span=10.0)
    assert 18.0 < low <= 19.0 and high > 31.0
    low, _ = curve_y_range([31.0, 29.0], [31.0, 29.0, 28.0, -40.0], span=None)
    assert low < -40.0
    low, _ = curve_y_range([31.0, 29.0], [31.0, 29.0, 25.0], span=10.0)  # nothing to clip
    assert 24.0 < low < 25.0


def test_robustness_curves_group_families_name_models_and_mark_values_below_the_axis(tmp_path):
    table = _curve_table()
    panels = {p: NOISE_COUNTERPART[p] for p in ("pgd_kspace_linf",)} | {"pgd_kspace_l2": "noise_kspace_l2"}
    figure = plot_metric_curves(table, panels, tmp_path / "c.png", tmp_path / "c.pdf", PERTURBATION_LEVELS)
    assert (tmp_path / "c.png").stat().st_size > 0 and (tmp_path / "c.pdf").stat().st_size > 0
    texts = _texts(figure)
    # One legend per family, with display names; the style legend says what dashed means.
    for title, labels in (
        ("Unrolled networks", ("MoDL", "SMUG", "Weighted SMUG")),
        ("U-Nets", ("U-Net",)),
        ("CS, untrained, zero-filled", ("CS (TV)", "Zero-filled")),
    ):
        legends = [ax.get_legend() for ax in figure.axes if ax.get_legend() is not None]
        [legend] = [lg for lg in legends if lg.get_title().get_text() == title]
        assert set(labels) <= {t.get_text() for t in legend.get_texts()}
    assert "dashed = random noise of the same norm" in texts
    assert "modl" not in texts and "weighted_smug" not in texts
    # PSNR panels stop 10 dB below the lowest clean score instead of stretching to -40 dB ...
    psnr_axes = [ax for ax in figure.axes if ax.get_ylabel().endswith("PSNR")]
    assert len(psnr_axes) == 3  # one family per row, one attack column
    for ax in psnr_axes:
        low, _ = ax.get_ylim()
        assert 14.0 < low < 15.0
    # ... and the collapse is marked on the bottom edge of the unrolled networks' panel, with its value.
    unrolled = [ax for ax in psnr_axes if ax.get_ylabel().startswith("Unrolled networks")][0]
    markers = [line for line in unrolled.get_lines() if line.get_marker() == "v"]
    assert markers and all(line.get_ydata()[0] < unrolled.get_ylim()[0] + 0.2 * 17 for line in markers)
    assert "min -40" in [t.get_text() for t in unrolled.texts]
    assert not [
        line for ax in psnr_axes if ax is not unrolled for line in ax.get_lines() if line.get_marker() == "v"
    ]


def test_acceleration_shift_marks_the_training_acceleration(tmp_path):
    table = _curve_table()
    figure = plot_metric_curves(
        table,
        {"acceleration": None},
        tmp_path / "a.png",
        tmp_path / "a.pdf",
        PERTURBATION_LEVELS,
        include_clean=False,
        marks={"acceleration": (4.0, "trained at 4x")},
    )
    for ax in figure.axes:
        if not ax.get_lines():
            continue
        vertical = [line for line in ax.get_lines() if list(line.get_xdata()) == [4.0, 4.0]]
        assert vertical, ax.get_ylabel()
        assert list(ax.get_xticks()) == [2.0, 4.0, 8.0]
        assert [t.get_text() for t in ax.get_xticklabels()] in ([], ["2x", "4x", "8x"])  # inner rows share x
    bottom = [ax for ax in figure.axes if ax.get_xlabel()]
    assert bottom and all([t.get_text() for t in ax.get_xticklabels()] == ["2x", "4x", "8x"] for ax in bottom)
    assert "trained at 4x" in _texts(figure)
    assert "dashed = random noise of the same norm" not in _texts(figure)


def test_image_grid_prints_each_tiles_psnr_and_ssim_against_the_target(tmp_path):
    rng = np.random.default_rng(0)
    target = rng.random((24, 24))
    clean = target + 0.05 * rng.standard_normal((24, 24))
    attacked = target + 0.2 * rng.standard_normal((24, 24))
    rows = {"modl": (clean, attacked), "zero_filled": (clean * 0.9, np.full_like(target, np.nan))}
    figure = plot_image_grid(target, rows, tmp_path / "g.png", tmp_path / "g.pdf", "pgd eps=0.02")
    texts = _texts(figure)
    for image in (clean, attacked, clean * 0.9):
        expected = f"PSNR {psnr(target, image):.2f} dB\nSSIM {ssim(target[None], image[None]):.3f}"
        assert expected in texts
        assert f"NMSE {nmse(target, image):.3g}" in texts
    assert "not attacked" in texts
    assert "MoDL" in texts and "Zero-filled" in texts


def _feature_recons(root, size=8):
    """A recon root with one 16x16 slice, two features, a model recovering the first only."""
    target = np.full((1, 32, 32), 0.5)
    labels = np.zeros((1, 32, 32), dtype=np.int32)
    labels[0, 6:9, 6:9], labels[0, 22:25, 22:25] = 1, 2
    target[labels > 0] = 1.0
    recon = target.copy()
    recon[0, 22:25, 22:25] = 0.5  # the second feature is gone
    folder = root / "modl" / "small_feature"
    (folder / "target").mkdir(parents=True)
    (folder / "3").mkdir()
    with h5py.File(folder / "windows.h5", "w") as f:
        f["vol.h5"] = labels
    with h5py.File(folder / "target" / "vol.h5", "w") as f:
        f["reconstruction_rss"] = target
    with h5py.File(folder / "3" / "vol.h5", "w") as f:
        f["reconstruction"] = recon


def test_small_features_mark_each_feature_detected_or_missed(tmp_path):
    _feature_recons(tmp_path)
    crops, windows, scores, level = feature_crops(tmp_path, ["modl"])
    assert level == 3.0 and len(windows) == 2
    assert [s["detected"] for s in scores["modl"]] == [True, False]
    table = pd.DataFrame([_row("modl", "small_feature", 3.0, "feature_detected", 0.625)])
    rates = detection_rates(table, level)
    figure = plot_feature_crops(
        crops, windows, tmp_path / "f.png", tmp_path / "f.pdf", scores=scores, rates=rates, size=level
    )
    texts = _texts(figure)
    assert "MoDL\n62 % detected (test set)" in texts or "MoDL\n63 % detected (test set)" in texts
    labels = [t for t in texts if t.startswith(("✓", "✗"))]
    assert labels[0].startswith("✓ detected") and labels[1].startswith("✗ missed")


@pytest.mark.parametrize("marks", [{}, {"acceleration": (4.0, "trained at 4x")}])
def test_curves_without_the_reference_or_with_one_family_still_draw(tmp_path, marks):
    table = _curve_table()
    table = table[table["model"].isin(["modl", "smug"])]
    figure = plot_metric_curves(
        table,
        {"acceleration": None},
        tmp_path / "u.png",
        tmp_path / "u.pdf",
        PERTURBATION_LEVELS,
        include_clean=False,
        marks=marks,
    )
    assert len([ax for ax in figure.axes if ax.get_lines()]) == 2  # one family row, PSNR and SSIM
    assert "Zero-filled (reference)" not in _texts(figure)
