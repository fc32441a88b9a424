"""What the pipeline promises when a file is crafted, damaged or absurd: nothing in it runs, nothing
half-written is left, and the message names the file (the README's "Reliability" section)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from smug.data import make_dataset, FastMRIFormatError, VolumeLimits, read_slice, validate_volume
from smug.utils import UnsafeFileError, load_torch_file
from smug.mri import save_mask
from smug.models import load_method
from smug.training import TrainSettings, fit
from tests.fastmri_files import write_fastmri_volume
from tests.workflow_utils import TINY_CONFIG, copy_workflow, deep_update, snakemake, write_config

REPO = Path(__file__).resolve().parents[1]


class _Payload:
    """Pickles as a call of ``os.system``: whoever unpickles it with the full unpickler runs it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _crafted(path: Path, marker: Path, record: dict) -> Path:
    torch.save({**record, "payload": _Payload(marker)}, path)
    return path


def _script(name: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, str(REPO / "scripts" / name), *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
    )


@pytest.fixture()
def volume(tmp_path) -> Path:
    return write_fastmri_volume(
        tmp_path / "file1000001.h5",
        challenge="singlecoil",
        anatomy="knee",
        num_slices=2,
        kspace_shape=(16, 8),
        recon_size=(8, 8),
        num_coils=1,
    )


@pytest.fixture()
def mask(tmp_path) -> Path:
    path = tmp_path / "2x.npz"
    columns = np.zeros(8, bool)
    columns[::2] = columns[3:5] = True
    save_mask(
        path,
        columns,
        num_low_frequencies=2,
        acceleration=2,
        center_fraction=0.25,
        mask_type="equispaced",
        seed=0,
    )
    return path


# --- Loading a model, generator or checkpoint never executes code ---------------------------------


def test_crafted_model_file_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "executed"
    path = _crafted(tmp_path / "model.pt", marker, {"kind": "zero_filled"})
    with pytest.raises(
        UnsafeFileError, match=f"refusing model file {path}: it holds the object posix.system"
    ):
        load_method(path)
    assert not marker.exists()


def test_damaged_torch_files_are_named(tmp_path):
    truncated = tmp_path / "cut.pt"
    torch.save({"kind": "zero_filled", "weights": torch.zeros(1000)}, truncated)
    truncated.write_bytes(truncated.read_bytes()[:200])
    with pytest.raises(
        ValueError, match=f"cannot read generator {truncated}: .*truncated, or not a PyTorch file"
    ):
        load_torch_file(truncated, what="generator")
    with pytest.raises(FileNotFoundError, match=f"model file {tmp_path / 'absent.pt'} does not exist"):
        load_method(tmp_path / "absent.pt")


class _Slices(torch.utils.data.Dataset):
    def __len__(self):
        return 2

    def __getitem__(self, i):
        return {
            "kspace": torch.full((1, 1, 3), complex(i)),
            "mask": torch.ones(3, dtype=torch.bool),
            "fname": f"f{i}",
            "slice": 0,
        }


def test_crafted_checkpoint_is_ignored_without_running_it(tmp_path, caplog):
    marker = tmp_path / "executed"
    checkpoint = _crafted(tmp_path / "run.ckpt", marker, {"identity": {"run": "crafted"}, "epoch": 0})
    model = torch.nn.Linear(3, 1)

    def loss(m, batch, generator):
        return m(batch.kspace.real.flatten(1)).pow(2).mean()

    result = fit(
        model,
        loss,
        _Slices(),
        lambda m: {"score": 0.0},
        TrainSettings(epochs=1, batch_size=2),
        torch.device("cpu"),
        checkpoint,
        {"run": "crafted"},
    )
    assert not marker.exists()
    assert result.steps == 1  # trained from scratch, not resumed
    assert f"refusing checkpoint {checkpoint}: it holds the object posix.system" in caplog.text
    assert "starting from scratch" in caplog.text
    # The checkpoint it wrote instead is plain data, RNG state included.
    assert load_torch_file(checkpoint)["epoch"] == 0


def test_crafted_generator_fails_the_evaluation_before_any_reconstruction(tmp_path, volume, mask):
    model = tmp_path / "zero_filled" / "model.pt"
    assert _script("write_method.py", "--kind", "zero_filled", "--out", model).returncode == 0
    marker = tmp_path / "executed"
    (tmp_path / "unet_adv").mkdir()
    generator = _crafted(tmp_path / "unet_adv" / "model.pt", marker, {"kind": "unet_adv"})
    recons, scores = tmp_path / "recons", tmp_path / "scores.csv"
    arguments = (
        "--model",
        model,
        "--test",
        volume,
        "--train-mask",
        mask,
        "--generators",
        generator,
        "--out",
        scores,
        "--recon-dir",
        recons,
        "--device",
        "cpu",
    )
    run = _script("evaluate.py", *arguments)
    assert run.returncode != 0 and f"refusing model file {generator}" in run.stderr
    assert not marker.exists() and not recons.exists() and not scores.exists()
    generator.write_bytes(b"PK\x03\x04 cut short")
    run = _script("evaluate.py", *arguments)
    assert run.returncode != 0 and f"cannot read model file {generator}" in run.stderr
    assert not recons.exists() and not scores.exists()


# --- Non-finite data is refused where it is read, named -------------------------------------------


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_non_finite_kspace_is_refused_naming_file_slice_and_dataset(tmp_path, volume, mask, value):
    with h5py.File(volume, "r+") as hf:
        kspace = hf["kspace"][1]
        kspace[3, 2] = value
        hf["kspace"][1] = kspace
    message = f"{volume}: slice 1 of 'kspace' holds non-finite values (NaN or Inf): 1 of 128"
    with pytest.raises(FastMRIFormatError, match=re.escape(message)):
        read_slice(volume, 1)
    dataset = make_dataset([volume], None, mask, None)
    dataset[0]  # slice 0 is fine
    with pytest.raises(FastMRIFormatError, match="slice 1 of 'kspace'"):
        dataset[1]
    scores, recons = tmp_path / "scores.csv", tmp_path / "recons"
    model = tmp_path / "zero_filled" / "model.pt"
    assert _script("write_method.py", "--kind", "zero_filled", "--out", model).returncode == 0
    run = _script(
        "evaluate.py",
        "--model",
        model,
        "--test",
        volume,
        "--train-mask",
        mask,
        "--out",
        scores,
        "--recon-dir",
        recons,
        "--device",
        "cpu",
    )
    assert run.returncode != 0
    assert message in run.stderr
    assert not scores.exists() and not recons.exists()


def test_non_finite_target_is_refused(volume):
    with h5py.File(volume, "r+") as hf:
        hf["reconstruction_esc"][0, 0, 0] = np.nan
    with pytest.raises(FastMRIFormatError, match="slice 0 of 'reconstruction_esc' holds non-finite values"):
        read_slice(volume, 0)


# --- Declared shapes are checked before anything is read ------------------------------------------


def _declare_kspace(path: Path, shape: tuple[int, ...]) -> None:
    """Replace ``kspace`` by a dataset that declares ``shape`` but stores nothing (a few KB on disk)."""
    with h5py.File(path, "r+") as hf:
        del hf["kspace"]
        del hf["reconstruction_esc"]
        hf.create_dataset(
            "kspace", shape=shape, dtype=np.complex64, chunks=(1,) * (len(shape) - 2) + (64, 64)
        )


def test_oversized_declared_shape_is_refused_before_reading(tmp_path, volume):
    _declare_kspace(volume, (2, 2, 10**6, 10**6))
    assert volume.stat().st_size < 100_000
    limits = VolumeLimits(max_slices=256, max_coils=64, max_height=1024, max_width=1024)
    with pytest.raises(
        FastMRIFormatError, match=r"k-space height 1000000 > 1024, k-space width 1000000 > 1024"
    ):
        validate_volume(volume, limits)
    out = tmp_path / "split.txt"
    run = _script("make_split.py", "--volumes", volume, "--volume-limits", 256, 64, 1024, 1024, "--out", out)
    assert run.returncode != 0 and f"{volume}: declares 'kspace' (2, 2, 1000000, 1000000)" in run.stderr
    assert not out.exists()
    # Read by hand without the split's check, it still fails with the file named, not a traceback.
    with pytest.raises(FastMRIFormatError, match=f"{volume}: slice 0 of 'kspace' .* does not fit in memory"):
        read_slice(volume, 0)


def test_large_but_plausible_shapes_pass_the_limits(volume):
    info = validate_volume(volume, VolumeLimits(max_slices=2, max_coils=1, max_height=16, max_width=8))
    assert info.kspace_shape == (2, 16, 8)
    with pytest.raises(FastMRIFormatError, match=r"slices 2 > 1\)"):
        validate_volume(volume, VolumeLimits(max_slices=1, max_coils=1, max_height=16, max_width=8))


# --- Messages name their culprit ------------------------------------------------------------------


def test_empty_or_missing_volume_list_is_named(tmp_path, mask):
    empty = tmp_path / "test_knee.txt"
    empty.write_text("\n")
    model = tmp_path / "zero_filled" / "model.pt"
    assert _script("write_method.py", "--kind", "zero_filled", "--out", model).returncode == 0
    common = (
        "--model",
        model,
        "--train-mask",
        mask,
        "--out",
        tmp_path / "s.csv",
        "--recon-dir",
        tmp_path / "r",
    )
    run = _script("evaluate.py", "--test", f"@{empty}", *common)
    assert run.returncode == 2 and f"list file {empty} (given as @{empty}) is empty" in run.stderr
    run = _script("evaluate.py", "--test", f"@{tmp_path / 'absent.txt'}", *common)
    assert (
        run.returncode == 2
        and f"list file {tmp_path / 'absent.txt'}" in run.stderr
        and "does not exist" in run.stderr
    )


def test_split_beyond_the_configured_volume_limits_stops_naming_the_file(tmp_path):
    """In the workflow: data.volume_limits reaches make_split.py, which refuses the volume before
    any job reads it and leaves no split list."""
    copy_workflow(tmp_path)
    overrides = deep_update(TINY_CONFIG, {"data": {"volume_limits": {"max_slices": 1}}})
    config = write_config(tmp_path, overrides)
    target = "resources/splits/val_knee.txt"
    result = snakemake(["--cores", "1", target, "--configfile", str(config)], cwd=tmp_path, timeout=600)
    assert result.returncode != 0
    log = (tmp_path / "results/logs/splits/val_knee.log").read_text()
    assert "declares 'kspace'" in log and "beyond data.volume_limits (slices 2 > 1)" in log
    assert "file1010001.h5" in log
    assert not (tmp_path / target).exists()
