"""Per-volume scoring, the robustness table's schema and its intervals over seeds and volumes."""

import numpy as np
import pandas as pd
import pytest

from smug.evaluation import VolumeStack, save_reconstructions, volume_rows, psnr
from smug.reporting import robustness_by_seed, ROBUSTNESS_COLUMNS, robustness_table, wide_table
from smug.reporting import write_wide_tables


def _volumes(rng, n_volumes=4, noise=0.05):
    volumes = {}
    for v in range(n_volumes):
        stack = VolumeStack()
        for s in (2, 0, 1):  # out of order on purpose
            target = rng.random((8, 8))
            stack.slices.append(s)
            stack.target.append(target)
            stack.recon.append(target + noise * rng.standard_normal((8, 8)))
        volumes[f"file{v}.h5"] = stack
    return volumes


def test_volume_rows_score_each_volume_with_fastmri_metrics():
    rng = np.random.default_rng(0)
    volumes = _volumes(rng)
    rows = pd.DataFrame(volume_rows(volumes, "modl", "clean", 0))
    assert set(rows["metric"]) == {"NMSE", "PSNR", "SSIM"}
    recon, target = volumes["file0.h5"].arrays()
    expected = psnr(target, recon)
    got = rows[(rows["volume"] == "file0.h5") & (rows["metric"] == "PSNR")]["value"].item()
    assert got == pytest.approx(expected)
    assert (rows["n_slices"] == 3).all()


def _seeded_frames(rng, seeds=(0, 1)):
    return [
        pd.DataFrame(volume_rows(_volumes(rng, noise=n * (1 + seed)), model, p, level)).assign(seed=seed)
        for seed in seeds
        for model, n in (("modl", 0.05), ("smug", 0.03))
        for p, level in (("clean", 0), ("pgd_kspace_linf", 0.01), ("pgd_kspace_linf", 0.02))
    ]


def test_table_schema_no_nan_and_ci_contains_mean():
    rng = np.random.default_rng(1)
    frames = _seeded_frames(rng)
    table = robustness_table(frames, "abc", "deadbeef")
    assert list(table.columns) == ROBUSTNESS_COLUMNS and "n_seeds" in ROBUSTNESS_COLUMNS
    assert len(table) == 2 * 3 * 3
    assert not table.isna().any().any()
    assert ((table["ci_low"] <= table["mean"]) & (table["mean"] <= table["ci_high"])).all()
    assert (table["n_slices"] == 12).all() and (table["n_seeds"] == 2).all()
    # The mean is over seeds and volumes alike; each seed's own row is in the by-seed table.
    by_seed = robustness_by_seed(frames, "abc", "deadbeef")
    assert len(by_seed) == 2 * len(table) and set(by_seed["seed"]) == {0, 1}
    key = ["model", "perturbation", "level", "metric"]
    seed_means = by_seed.groupby(key)["mean"].mean()
    np.testing.assert_allclose(table.set_index(key)["mean"].sort_index(), seed_means.sort_index())
    assert (by_seed["n_seeds"] == 1).all()
    assert (table["config_hash"] == "abc").all() and (table["git_commit"] == "deadbeef").all()
    wide = wide_table(table, "pgd_kspace_linf", "PSNR")
    assert list(wide.index) == ["modl", "smug"] and list(wide.columns) == ["0.01", "0.02"]


def test_nan_scores_are_refused_naming_the_condition():
    frame = pd.DataFrame(
        [
            {
                "model": "m",
                "perturbation": "clean",
                "level": 0.0,
                "metric": "PSNR",
                "seed": 0,
                "volume": "v",
                "value": float("nan"),
                "n_slices": 1,
            }
        ]
    )
    with pytest.raises(ValueError, match="NaN metric values"):
        robustness_table([frame], "h", "c")


def test_a_seed_missing_a_volume_is_named():
    frames = _seeded_frames(np.random.default_rng(3))
    frames[-1] = frames[-1][frames[-1]["volume"] != "file2.h5"]
    with pytest.raises(ValueError, match="every seed must score the same volumes, but seed 1 lacks file2.h5"):
        robustness_table(frames, "h", "c")


def test_wide_tables_and_reconstruction_files(tmp_path):
    import h5py

    rng = np.random.default_rng(2)
    volumes = _volumes(rng, n_volumes=2)
    table = robustness_table(
        [pd.DataFrame(volume_rows(volumes, "modl", "clean", 0)).assign(seed=0)], "h", "c"
    )
    write_wide_tables(table, tmp_path / "t.md", tmp_path / "t.tex")
    assert "clean: PSNR" in (tmp_path / "t.md").read_text()
    assert "\\begin{table}" in (tmp_path / "t.tex").read_text()
    save_reconstructions(tmp_path / "recons", volumes, "reconstruction")
    with h5py.File(tmp_path / "recons" / "file0.h5") as f:
        recon, _ = volumes["file0.h5"].arrays()
        np.testing.assert_allclose(f["reconstruction"][()], recon.astype(np.float32))
