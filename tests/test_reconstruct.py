"""Reconstructing your own fastMRI files (scripts/reconstruct.py): train/val files undersampled with
a mask, test files with their own mask, ESPIRiT maps estimated and cached, fastMRI's submission
layout, and a clear error for each way a file can not suit the model."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from smug.data import FastMRIFormatError
from smug.mri import save_mask, center_crop
from smug.evaluation import psnr, SUBMISSION_SIZE, reconstruct_files
from tests.fastmri_files import write_fastmri_volume

REPO = Path(__file__).resolve().parents[1]
# Low eigenvalue crop: at 24 x 24 a crop near 1 cuts into the object itself.
ESPIRIT = {"num_acs": 8, "kernel_size": 4, "threshold": 0.02, "crop": 0.5}


def _script(name: str, *args) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, str(REPO / "scripts" / name), *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
    )


@pytest.fixture()
def zero_filled(tmp_path) -> Path:
    path = tmp_path / "zero_filled" / "model.pt"
    assert _script("write_method.py", "--kind", "zero_filled", "--out", path).returncode == 0
    return path


def _mask(path: Path, width: int, every: int = 1) -> Path:
    columns = np.zeros(width, bool)
    columns[::every] = True
    columns[width // 2 - 2 : width // 2 + 2] = True
    save_mask(
        path,
        columns,
        num_low_frequencies=4,
        acceleration=every,
        center_fraction=4 / width,
        mask_type="equispaced",
        seed=0,
    )
    return path


def _val_volume(folder: Path, name: str = "file1000001.h5", challenge: str = "multicoil") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return write_fastmri_volume(
        folder / name,
        challenge=challenge,
        anatomy="knee",
        num_slices=2,
        kspace_shape=(48, 24),
        recon_size=(24, 24),
        num_coils=4,
        seed=3,
    )


def test_val_file_is_reconstructed_in_submission_layout_and_rescored(tmp_path, zero_filled):
    volume = _val_volume(tmp_path / "val")
    out = tmp_path / "recons"
    run = _script(
        "reconstruct.py",
        "--model",
        zero_filled,
        "--files",
        volume,
        "--mask",
        _mask(tmp_path / "m.npz", 24),
        "--out-dir",
        out,
        "--num-acs",
        8,
        "--kernel-size",
        4,
        "--crop",
        0.5,
    )
    assert run.returncode == 0, run.stderr
    with h5py.File(out / volume.name) as f, h5py.File(volume) as source:
        recon = f["reconstruction"][()]
        target = source["reconstruction_rss"][()]
    assert list(h5py.File(out / volume.name).keys()) == ["reconstruction"]
    assert recon.dtype == np.float32 and recon.shape == (2, *SUBMISSION_SIZE)
    # Fully sampled zero-filled with estimated maps: the file's own target, on its own scale.
    score = psnr(target, center_crop(torch.from_numpy(recon), target.shape[-2:]).numpy())
    assert score > 40, score
    assert (out / ".sens_maps" / "recon" / volume.name).is_file()


def test_test_file_uses_its_own_mask_and_caches_its_maps(tmp_path, zero_filled):
    folder = tmp_path / "test"
    folder.mkdir()
    # Wide enough that its fully sampled centre (8% of the columns at 4x) holds an ESPIRiT kernel.
    volume = write_fastmri_volume(
        folder / "file1000002.h5",
        challenge="multicoil",
        anatomy="knee",
        num_slices=2,
        kspace_shape=(48, 100),
        recon_size=(24, 24),
        num_coils=4,
        test_file=True,
        seed=4,
    )
    out = tmp_path / "recons"
    written = reconstruct_files(model=zero_filled, files=[volume], out_dir=out, mask=None, espirit=ESPIRIT)
    assert written == [out / volume.name]
    recon = h5py.File(written[0])["reconstruction"][()]
    assert recon.shape == (2, *SUBMISSION_SIZE) and np.isfinite(recon).all() and recon.max() > 0
    maps = out / ".sens_maps" / "stored" / volume.name
    assert h5py.File(maps)["sens_maps"].shape[-2:] == (48, 100)  # the stored grid
    stamp = maps.stat().st_mtime_ns
    reconstruct_files(model=zero_filled, files=[volume], out_dir=out, mask=None, espirit=ESPIRIT)
    assert maps.stat().st_mtime_ns == stamp  # cached, not estimated again


def test_single_coil_needs_no_maps(tmp_path, zero_filled):
    volume = _val_volume(tmp_path / "val", challenge="singlecoil")
    out = tmp_path / "recons"
    reconstruct_files(
        model=zero_filled, files=[volume], out_dir=out, mask=_mask(tmp_path / "m.npz", 24, 2), espirit=ESPIRIT
    )
    assert h5py.File(out / volume.name)["reconstruction"].shape == (2, *SUBMISSION_SIZE)
    assert not (out / ".sens_maps").exists()


def test_files_that_do_not_suit_the_model_are_named(tmp_path, zero_filled):
    multicoil = _val_volume(tmp_path / "a")
    singlecoil = _val_volume(tmp_path / "b", "file1000003.h5", challenge="singlecoil")
    out = tmp_path / "recons"
    with pytest.raises(FastMRIFormatError, match="the files mix challenges"):
        reconstruct_files(
            model=zero_filled, files=[multicoil, singlecoil], out_dir=out, mask=None, espirit=ESPIRIT
        )
    with pytest.raises(ValueError, match=f"{multicoil}: has a target, so it is undersampled retrospectively"):
        reconstruct_files(model=zero_filled, files=[multicoil], out_dir=out, mask=None, espirit=ESPIRIT)
    narrow = _mask(tmp_path / "narrow.npz", 16)
    run = _script(
        "reconstruct.py", "--model", zero_filled, "--files", singlecoil, "--mask", narrow, "--out-dir", out
    )
    assert run.returncode == 1
    assert f"{narrow}: mask width 16 does not match the k-space width 24 of {singlecoil}" in run.stderr
    assert not (out / singlecoil.name).exists()
    # A model trained on the other challenge.
    record = torch.load(zero_filled, weights_only=True)
    trained = tmp_path / "modl" / "model.pt"
    trained.parent.mkdir()
    from smug.models import build_model

    spec = {
        "kind": "modl",
        "data": {"challenge": "singlecoil"},
        "model": {
            "denoiser": "dncnn",
            "denoiser_args": {"num_chans": 4, "num_layers": 3},
            "num_unrolls": 1,
            "lam": 0.05,
            "learn_lam": False,
            "cg_max_iter": 2,
            "cg_tol": 1e-6,
        },
    }
    torch.save(
        {
            **record,
            "kind": "modl",
            "spec": spec,
            "state_dict": build_model("modl", spec["model"]).state_dict(),
        },
        trained,
    )
    with pytest.raises(
        FastMRIFormatError, match=f"is multicoil data, but {trained} was trained on singlecoil data"
    ):
        reconstruct_files(model=trained, files=[multicoil], out_dir=out, mask=None, espirit=ESPIRIT)
