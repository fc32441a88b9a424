"""What the pipeline promises about the files it reads and writes (issue 28): it never replaces its
own inputs, never reads other local files through a crafted HDF5 volume, never trusts a header's
recon size or a test file's stored mask blindly. Each case is refused with one message naming the
file, and nothing is written."""

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

from smug.data import FastMRIFormatError, inspect_volume, maps_file_matches, open_volume, read_file_mask
from smug.data import read_sens_maps, read_slice, select_slices, SliceDataset, validate_volume, VolumeLimits
from smug.mri import save_mask
from smug.utils import provenance
from smug.evaluation import reconstruct_files
from tests.fastmri_files import write_fastmri_volume

REPO = Path(__file__).resolve().parents[1]
ESPIRIT = {"num_acs": 2, "kernel_size": 2, "threshold": 0.02, "crop": 0.5}
LIMITS = VolumeLimits(max_slices=256, max_coils=64, max_height=1024, max_width=1024)


def _volume(path: Path, *, test_file: bool = False, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_fastmri_volume(
        path,
        challenge="singlecoil",
        anatomy="knee",
        num_slices=2,
        kspace_shape=(16, 8),
        recon_size=(8, 8),
        num_coils=1,
        test_file=test_file,
        seed=seed,
    )


def _script(name: str, *args) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, str(REPO / "scripts" / name), *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
    )


@pytest.fixture()
def model(tmp_path) -> Path:
    path = tmp_path / "zero_filled" / "model.pt"
    path.parent.mkdir()
    torch.save({"kind": "zero_filled", "provenance": provenance()}, path)
    return path


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


def _reconstruct(model: Path, files: list[Path], out_dir: Path, mask: Path | None) -> list[Path]:
    return reconstruct_files(model=model, files=files, out_dir=out_dir, mask=mask, espirit=ESPIRIT)


def _files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


# --- Case 2: reconstruct.py never replaces an input, nor one output by another --------------------


def test_reconstruct_into_the_input_folder_is_refused_and_the_input_kept(tmp_path, model, mask):
    volume = _volume(tmp_path / "same" / "file1000001.h5")
    before = volume.read_bytes()
    run = _script(
        "reconstruct.py", "--model", model, "--files", volume, "--mask", mask, "--out-dir", volume.parent
    )
    assert run.returncode == 1
    assert f"error: {volume}: writing it would replace the input file {volume}" in run.stderr
    assert volume.read_bytes() == before
    assert _files_under(volume.parent) == [volume]


def test_reconstruct_output_that_is_an_input_through_a_link_is_refused(tmp_path, model, mask):
    volume = _volume(tmp_path / "data" / "file1000001.h5")
    before = volume.read_bytes()
    linked = tmp_path / "linked"
    linked.symlink_to(volume.parent, target_is_directory=True)
    with pytest.raises(
        ValueError, match=f"{linked / volume.name}: writing it would replace the input file {volume}"
    ):
        _reconstruct(model, [volume], linked, mask)
    hard = tmp_path / "hard"
    hard.mkdir()
    os.link(volume, hard / volume.name)
    with pytest.raises(
        ValueError, match=f"{hard / volume.name}: writing it would replace the input file {volume}"
    ):
        _reconstruct(model, [volume], hard, mask)
    assert volume.read_bytes() == before
    assert _files_under(hard) == [hard / volume.name]


def test_two_inputs_of_one_name_are_refused_before_any_reconstruction(tmp_path, model, mask):
    first = _volume(tmp_path / "dupA" / "file1000001.h5")
    second = _volume(tmp_path / "dupB" / "file1000001.h5", seed=1)
    out = tmp_path / "recons"
    run = _script(
        "reconstruct.py", "--model", model, "--files", first, second, "--mask", mask, "--out-dir", out
    )
    assert run.returncode == 1
    assert f"error: {first} and {second} would both be written to {out / first.name}" in run.stderr
    assert _files_under(out) == []


def test_estimated_maps_never_replace_an_input(tmp_path, model, mask):
    """A multicoil input that sits where its estimated maps would be cached is refused too."""
    out = tmp_path / "recons"
    volume = out / ".sens_maps" / "recon" / "file1000002.h5"
    volume.parent.mkdir(parents=True)
    write_fastmri_volume(
        volume,
        challenge="multicoil",
        anatomy="knee",
        num_slices=1,
        kspace_shape=(16, 8),
        recon_size=(8, 8),
        num_coils=2,
    )
    before = volume.read_bytes()
    with pytest.raises(ValueError, match=f"{volume}: writing it would replace the input file {volume}"):
        _reconstruct(model, [volume], out, mask)
    assert volume.read_bytes() == before and _files_under(out) == [volume]


# --- Case 3: a volume never reads other files (external storage, external links, VDS) -------------


def _external_storage(path: Path) -> str:
    with h5py.File(path, "r+") as hf:
        shape = hf["kspace"].shape
        del hf["kspace"]
        hf.create_dataset(
            "kspace", shape=shape, dtype=np.complex64, external=[("/etc/passwd", 0, h5py.h5f.UNLIMITED)]
        )
    return r"dataset '/kspace' stores its data in external files \['/etc/passwd'\]"


def _external_link(path: Path) -> str:
    source = _volume(path.parent / "elsewhere" / "file1000009.h5", test_file=True, seed=5)
    with h5py.File(path, "r+") as hf:
        del hf["kspace"]
        hf["kspace"] = h5py.ExternalLink(str(source), "/kspace")
    return f"'/kspace' is an external link to {source}:/kspace"


def _nested_external_link(path: Path) -> str:
    with h5py.File(path, "r+") as hf:
        hf.create_group("extra/deeper")["leak"] = h5py.ExternalLink("/etc/passwd", "/")
    return "'/extra/deeper/leak' is an external link to /etc/passwd:/"


def _soft_link_through_external_link(path: Path) -> str:
    source = _volume(path.parent / "elsewhere" / "file1000009.h5", test_file=True, seed=5)
    with h5py.File(path, "r+") as hf:
        del hf["kspace"]
        hf["outside"] = h5py.ExternalLink(str(source), "/")
        hf["kspace"] = h5py.SoftLink("/outside/kspace")
    return f"'/outside' is an external link to {source}:/"


def _virtual_dataset(path: Path) -> str:
    source = _volume(path.parent / "elsewhere" / "file1000009.h5", test_file=True, seed=5)
    with h5py.File(path, "r+") as hf:
        shape = hf["kspace"].shape
        del hf["kspace"]
        layout = h5py.VirtualLayout(shape=shape, dtype=np.complex64)
        layout[...] = h5py.VirtualSource(str(source), "kspace", shape=shape)
        hf.create_virtual_dataset("kspace", layout)
    return re.escape(f"dataset '/kspace' is a virtual dataset mapping ['{source}']")


@pytest.mark.parametrize(
    "craft",
    [
        _external_storage,
        _external_link,
        _nested_external_link,
        _soft_link_through_external_link,
        _virtual_dataset,
    ],
)
def test_volume_pointing_at_other_files_is_refused_by_every_reader(tmp_path, model, craft):
    volume = _volume(tmp_path / "crafted" / "file1000001.h5", test_file=True)
    problem = craft(volume)
    message = f"{re.escape(str(volume))}: {problem}"
    for read in (inspect_volume, open_volume, read_file_mask, lambda p: read_slice(p, 0)):
        with pytest.raises(FastMRIFormatError, match=message):
            read(volume)
    with pytest.raises(FastMRIFormatError, match=message):
        validate_volume(volume, LIMITS)
    out = tmp_path / "recons"
    with pytest.raises(FastMRIFormatError, match=message):
        _reconstruct(model, [volume], out, None)
    assert _files_under(out) == []


def test_sensitivity_map_file_pointing_at_other_files_is_refused(tmp_path):
    maps = tmp_path / "maps" / "file1000002.h5"
    maps.parent.mkdir()
    with h5py.File(maps, "w") as hf:
        hf.create_dataset(
            "sens_maps", shape=(1, 2, 4, 4), dtype=np.complex64, external=[("/etc/passwd", 0, 256)]
        )
    with pytest.raises(
        FastMRIFormatError, match=f"{maps}: dataset '/sens_maps' stores its data in external files"
    ):
        read_sens_maps(maps, 0)
    assert not maps_file_matches(maps, [0], {})


def test_soft_links_inside_the_file_are_still_read(tmp_path):
    volume = _volume(tmp_path / "file1000001.h5")
    expected, _ = read_slice(volume, 1)
    with h5py.File(volume, "r+") as hf:
        hf.move("kspace", "raw/kspace")
        hf["kspace"] = h5py.SoftLink("/raw/kspace")
        hf["raw/loop"] = hf["/"]  # a hard-link cycle: walked once
    kspace, _ = read_slice(volume, 1)
    np.testing.assert_array_equal(kspace, expected)


# --- Case 4: the header's recon size is checked before any slice is padded to it -----------------


def _declare_recon_size(path: Path, height: int, width: int) -> None:
    with h5py.File(path, "r+") as hf:
        header = hf["ismrmrd_header"][()]
        header = header.decode() if isinstance(header, bytes) else header
        header, count = re.subn(
            r"(<reconSpace>\s*<matrixSize>\s*<x>)\d+(</x>\s*<y>)\d+", rf"\g<1>{height}\g<2>{width}", header
        )
        assert count == 1
        del hf["ismrmrd_header"]
        hf.create_dataset("ismrmrd_header", data=header, dtype=h5py.string_dtype("utf-8"))


def test_absurd_header_recon_size_is_refused_naming_the_file(tmp_path, model, mask):
    volume = _volume(tmp_path / "data" / "file1000001.h5")
    _declare_recon_size(volume, 10**6, 10**6)
    with pytest.raises(
        FastMRIFormatError,
        match=re.escape(
            f"{volume}: header declares reconSpace 1000000 x 1000000, beyond data.volume_limits "
            "(recon height 1000000 > 1024, recon width 1000000 > 1024)"
        ),
    ):
        validate_volume(volume, LIMITS)
    in_memory = f"{re.escape(str(volume))}: header declares reconSpace 1000000 x 1000000: one slice of 1 coil"
    with pytest.raises(FastMRIFormatError, match=in_memory):
        read_slice(volume, 0)
    with pytest.raises(FastMRIFormatError, match=in_memory):
        SliceDataset(select_slices([volume], None))
    out = tmp_path / "recons"
    run = _script("reconstruct.py", "--model", model, "--files", volume, "--mask", mask, "--out-dir", out)
    assert run.returncode == 1
    assert f"error: {volume}: header declares reconSpace 1000000 x 1000000" in run.stderr
    assert "Traceback" not in run.stderr
    assert _files_under(out) == []


def test_recon_size_within_the_limits_passes(tmp_path):
    volume = _volume(tmp_path / "file1000001.h5")
    _declare_recon_size(volume, 16, 12)
    assert validate_volume(volume, VolumeLimits(max_slices=2, max_coils=1, max_height=16, max_width=12))
    with pytest.raises(FastMRIFormatError, match=r"reconSpace 16 x 12, beyond .*\(recon width 12 > 8\)"):
        validate_volume(volume, VolumeLimits(max_slices=2, max_coils=1, max_height=16, max_width=8))


# --- Case 7: a test file's stored mask must be a plausible sampling mask --------------------------


BAD_MASKS = {
    "all zero": (np.zeros(8, np.float32), "'mask' samples no k-space column"),
    "NaN": (
        np.array([0, 0, 0, np.nan, 1, np.nan, 0, 0], np.float32),
        r"'mask' holds non-finite values .* in 2 of 8",
    ),
    "negative": (
        np.array([0, -1, 0, 0, 1, 0, -1, 0], np.float32),
        r"'mask' must hold only 0 and 1 .*got \[-1.0\]",
    ),
    "not 0/1": (np.array([0, 0, 0, 0, 2, 0, 0, 0], np.int8), r"'mask' must hold only 0 and 1 .*got \[2\]"),
    "no centre": (
        np.array([1, 1, 1, 1, 0, 1, 1, 1], bool),
        "'mask' does not sample the centre column 4 of k-space",
    ),
}


def _set_mask(path: Path, values: np.ndarray) -> None:
    with h5py.File(path, "r+") as hf:
        del hf["mask"]
        hf.create_dataset("mask", data=values)


@pytest.mark.parametrize("case", sorted(BAD_MASKS))
def test_implausible_stored_mask_is_refused_naming_the_file(tmp_path, model, case):
    values, problem = BAD_MASKS[case]
    volume = _volume(tmp_path / "test" / "file1000003.h5", test_file=True)
    _set_mask(volume, values)
    message = f"{re.escape(str(volume))}: {problem}"
    for read in (inspect_volume, read_file_mask):
        with pytest.raises(FastMRIFormatError, match=message):
            read(volume)
    out = tmp_path / "recons"
    with pytest.raises(FastMRIFormatError, match=message):
        _reconstruct(model, [volume], out, None)
    assert _files_under(out) == []


@pytest.mark.parametrize("dtype", [bool, np.uint8, np.float32])
def test_plausible_stored_masks_pass(tmp_path, model, dtype):
    volume = _volume(tmp_path / "test" / "file1000003.h5", test_file=True)
    values = np.array([0, 1, 0, 1, 1, 1, 0, 1]).astype(dtype)
    _set_mask(volume, values)
    np.testing.assert_array_equal(read_file_mask(volume), values != 0)
    [written] = _reconstruct(model, [volume], tmp_path / "recons", None)
    assert h5py.File(written)["reconstruction"][()].max() > 0
