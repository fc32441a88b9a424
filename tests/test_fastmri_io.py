"""The fastMRI volume reader: good files, and one clear error per kind of bad file."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

import torch

from smug.data import anatomy_of, EncodingInfo, FastMRIFormatError, inspect_volume, ismrmrd_header, load_slice
from smug.data import open_volume, parse_ismrmrd_header, read_file_mask, read_sens_maps, read_slice
from smug.data import volume_plan, write_synthetic_volume, zero_kspace_padding
from tests.fastmri_files import LAYOUTS, write_fastmri_volume, write_layout

HEADER = ismrmrd_header((16, 8, 1), (8, 8, 1), center=4, maximum=7)


def make_volume(path: Path, challenge: str, sens_path: Path | None = None) -> Path:
    spec = volume_plan(9, {"val": 1}, ["knee"])[0]
    write_synthetic_volume(
        path,
        spec,
        challenge=challenge,
        num_slices=3,
        recon_size=(8, 8),
        kspace_size=(16, 8),
        num_coils=2,
        noise_level=0.01,
        sens_path=sens_path,
    )
    return path


def make_raw(path: Path, **datasets: np.ndarray | bytes) -> Path:
    with h5py.File(path, "w") as hf:
        for name, data in datasets.items():
            hf.create_dataset(name, data=data)
    return path


def kspace(*shape: int) -> np.ndarray:
    return np.ones(shape, dtype=np.complex64)


@pytest.mark.parametrize("challenge, coils", [("singlecoil", 1), ("multicoil", 2)])
def test_inspect_and_read_synthetic(tmp_path: Path, challenge: str, coils: int) -> None:
    path = make_volume(tmp_path / "file1.h5", challenge)
    info = inspect_volume(path)
    assert (info.challenge, info.num_slices, info.num_coils) == (challenge, 3, coils)
    assert (
        info.recon_key == {"singlecoil": "reconstruction_esc", "multicoil": "reconstruction_rss"}[challenge]
    )
    assert info.target_shape == (8, 8) and info.encoding.enc_size == (16, 8, 1)
    assert info.attrs["acquisition"] == "CORPD_FBK" and isinstance(info.attrs["max"], float)
    kspace_slice, target = read_slice(path, 2)
    assert kspace_slice.shape == (coils, 16, 8) and kspace_slice.dtype == np.complex64
    assert target is not None and target.shape == (8, 8) and target.dtype == np.float32
    with h5py.File(path, "r") as hf:
        np.testing.assert_array_equal(target, hf[info.recon_key][2])


def test_open_volume_keeps_handle(tmp_path: Path) -> None:
    path = make_volume(tmp_path / "file1.h5", "multicoil")
    with open_volume(path) as hf:
        first = load_slice(hf, 0)
        second = load_slice(hf, 1)
    np.testing.assert_array_equal(first[0], read_slice(path, 0)[0])
    assert not np.array_equal(first[0], second[0])


def test_test_file_without_target(tmp_path: Path) -> None:
    path = make_raw(tmp_path / "test.h5", kspace=kspace(2, 3, 16, 8), ismrmrd_header=HEADER)
    info = inspect_volume(path)
    assert info.recon_key is None and info.target_shape is None and info.num_coils == 3
    kspace_slice, target = read_slice(path, 1)
    assert kspace_slice.shape == (3, 16, 8) and target is None


def test_header_without_namespace_and_padding() -> None:
    xml = HEADER.replace(b' xmlns="http://www.ismrm.org/ISMRMRD"', b"")
    assert parse_ismrmrd_header(xml) == parse_ismrmrd_header(HEADER)
    info = parse_ismrmrd_header(ismrmrd_header((640, 372, 1), (320, 320, 1), center=183, maximum=365))
    assert (info.padding_left, info.padding_right) == (3, 369)


def test_header_errors() -> None:
    with pytest.raises(ValueError, match="not valid XML"):
        parse_ismrmrd_header(b"<ismrmrdHeader>")
    with pytest.raises(ValueError, match="encoding/encodingLimits/kspace_encoding_step_1/center"):
        parse_ismrmrd_header(HEADER.replace(b"<center>4</center>", b""))


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.h5"
    with pytest.raises(FastMRIFormatError, match="not found") as excinfo:
        inspect_volume(path)
    assert str(path) in str(excinfo.value) and excinfo.value.path == path


def test_truncated_file(tmp_path: Path) -> None:
    path = make_volume(tmp_path / "file1.h5", "multicoil")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(FastMRIFormatError, match="HDF5") as excinfo:
        inspect_volume(path)
    assert str(path) in str(excinfo.value)


def test_text_file_with_h5_suffix(tmp_path: Path) -> None:
    path = tmp_path / "notes.h5"
    path.write_text("this is not HDF5\n")
    with pytest.raises(FastMRIFormatError, match="not a readable HDF5 file") as excinfo:
        read_slice(path, 0)
    assert str(path) in str(excinfo.value)


def test_hdf5_without_kspace(tmp_path: Path) -> None:
    path = make_raw(
        tmp_path / "nok.h5", ismrmrd_header=HEADER, reconstruction_rss=np.zeros((2, 8, 8), np.float32)
    )
    with pytest.raises(FastMRIFormatError, match="no 'kspace'") as excinfo:
        inspect_volume(path)
    assert str(path) in str(excinfo.value)


@pytest.mark.parametrize(
    "datasets, match",
    [
        ({"kspace": np.ones((2, 16, 8), np.float32), "ismrmrd_header": HEADER}, "must be complex"),
        ({"kspace": kspace(16, 8), "ismrmrd_header": HEADER}, "must be complex"),
        ({"kspace": kspace(2, 16, 8)}, "no 'ismrmrd_header'"),
        ({"kspace": kspace(2, 16, 8), "ismrmrd_header": b"<ismrmrdHeader/>"}, "unparsable ismrmrd_header"),
        (
            {"kspace": kspace(2, 16, 8), "ismrmrd_header": HEADER, "reconstruction_esc": np.zeros((3, 8, 8))},
            "has 3 slices but 'kspace' has 2",
        ),
        (
            {"kspace": kspace(2, 2, 16, 8), "ismrmrd_header": HEADER, "reconstruction_rss": np.zeros((2, 8))},
            "must be real \\(slices, h, w\\)",
        ),
    ],
)
def test_invalid_content(tmp_path: Path, datasets: dict, match: str) -> None:
    path = make_raw(tmp_path / "bad.h5", **datasets)
    with pytest.raises(FastMRIFormatError, match=match) as excinfo:
        inspect_volume(path)
    assert str(path) in str(excinfo.value)


def test_slice_out_of_range(tmp_path: Path) -> None:
    path = make_volume(tmp_path / "file1.h5", "singlecoil")
    for index in (3, -1):
        with pytest.raises(FastMRIFormatError, match=r"slice .* out of range \[0, 3\)") as excinfo:
            read_slice(path, index)
        assert str(path) in str(excinfo.value)


def test_sens_maps(tmp_path: Path) -> None:
    sens_path = tmp_path / "sens_maps" / "file1.h5"
    volume = make_volume(tmp_path / "file1.h5", "multicoil", sens_path=sens_path)
    maps = read_sens_maps(sens_path, 1)
    assert maps.shape == (2, 8, 8) and maps.dtype == np.complex64
    with pytest.raises(FastMRIFormatError, match="out of range") as excinfo:
        read_sens_maps(sens_path, 3)
    assert str(sens_path) in str(excinfo.value)
    with pytest.raises(FastMRIFormatError, match="no 'sens_maps'"):
        read_sens_maps(volume, 0)
    bad = make_raw(tmp_path / "bad.h5", sens_maps=np.ones((2, 8, 8), np.complex64))
    with pytest.raises(FastMRIFormatError, match="complex \\(slices, coils, h, w\\)"):
        read_sens_maps(bad, 0)
    with pytest.raises(FastMRIFormatError, match="not found"):
        read_sens_maps(tmp_path / "absent.h5", 0)


# Real fastMRI layouts (tests/fastmri_files.py writes them scaled down).

TARGET_LAYOUTS = [kind for kind, spec in LAYOUTS.items() if not spec.get("test_file")]
TEST_LAYOUTS = [kind for kind, spec in LAYOUTS.items() if spec.get("test_file")]


@pytest.mark.parametrize("kind", TARGET_LAYOUTS)
def test_real_layouts_are_read(tmp_path: Path, kind: str) -> None:
    spec = LAYOUTS[kind]
    path = write_layout(tmp_path, kind)
    info = inspect_volume(path)
    coils = spec["num_coils"] if spec["challenge"] == "multicoil" else 1
    expected_kspace = (
        (spec["num_slices"],) + ((coils,) if spec["challenge"] == "multicoil" else ()) + spec["kspace_shape"]
    )
    assert info.challenge == spec["challenge"] and info.kspace_shape == expected_kspace
    assert info.num_coils == coils and info.has_target
    assert (
        info.recon_key
        == {"singlecoil": "reconstruction_esc", "multicoil": "reconstruction_rss"}[spec["challenge"]]
    )
    assert info.target_shape == spec["recon_size"] and info.encoding.recon_size[:2] == spec["recon_size"]
    assert info.anatomy == spec["anatomy"] and info.attrs["acquisition"] == spec["acquisition"]
    assert info.file_mask_shape is None and info.acceleration is None and info.num_low_frequency is None
    assert {"max", "norm", "patient_id"} <= set(info.attrs)
    left, right = spec["padding"] or (0, spec["kspace_shape"][1])
    assert (info.encoding.padding_left, info.encoding.padding_right) == (left, right)
    kspace_slice, target = read_slice(path, spec["num_slices"] - 1)
    assert kspace_slice.shape == (coils,) + spec["kspace_shape"] and target.shape == spec["recon_size"]
    # As in the real files, the never-acquired columns hold zeros and the rest the signal.
    assert (
        np.abs(kspace_slice[..., :left]).max(initial=0) == 0
        and np.abs(kspace_slice[..., right:]).max(initial=0) == 0
    )
    assert np.abs(kspace_slice[..., left:right]).min() > 0
    assert read_file_mask(path) is None


@pytest.mark.parametrize("kind", TEST_LAYOUTS)
def test_test_file_layout_mask_and_attrs(tmp_path: Path, kind: str) -> None:
    spec = LAYOUTS[kind]
    path = write_layout(tmp_path, kind)
    info = inspect_volume(path)
    width = spec["kspace_shape"][1]
    assert not info.has_target and info.recon_key is None and info.target_shape is None
    assert info.file_mask_shape == (width,) and info.acceleration == 4.0 and info.num_low_frequency == 2
    assert info.anatomy == "knee"
    mask = read_file_mask(path)
    assert mask.dtype == np.bool_ and mask.shape == (width,) and 0 < mask.sum() < width
    with open_volume(path) as hf:
        np.testing.assert_array_equal(read_file_mask(hf), mask)
        kspace_slice, target = load_slice(hf, 0)
    assert target is None
    # Already undersampled: exactly the mask's columns carry data.
    np.testing.assert_array_equal(np.abs(kspace_slice).sum(axis=(0, 1)) > 0, mask)


def test_bad_test_file_mask_and_attrs_are_named(tmp_path: Path) -> None:
    good = dict(kspace=kspace(2, 3, 16, 8), ismrmrd_header=HEADER)
    path = make_raw(tmp_path / "wide.h5", **good, mask=np.ones(9, np.float32))
    with pytest.raises(FastMRIFormatError, match=r"'mask' must be .*\(8,\).*shape \(9,\)") as excinfo:
        inspect_volume(path)
    assert str(path) in str(excinfo.value)
    path = make_raw(tmp_path / "square.h5", **good, mask=np.ones((16, 8), bool))
    with pytest.raises(FastMRIFormatError, match="'mask' must be"):
        read_file_mask(path)
    path = make_raw(tmp_path / "accel.h5", **good, mask=np.ones(8, bool))
    with h5py.File(path, "r+") as hf:
        hf.attrs["acceleration"] = "four"
    with pytest.raises(
        FastMRIFormatError, match="attribute 'acceleration' must be a positive float"
    ) as excinfo:
        inspect_volume(path)
    assert str(path) in str(excinfo.value)
    with h5py.File(path, "r+") as hf:
        hf.attrs["acceleration"] = 8
        hf.attrs["num_low_frequency"] = 2.5
    with pytest.raises(FastMRIFormatError, match="'num_low_frequency' must be a positive int"):
        inspect_volume(path)


@pytest.mark.parametrize(
    "fname, acquisition, anatomy",
    [
        ("file1000001.h5", "CORPD_FBK", "knee"),
        ("file1000002.h5", "CORPDFS_FBK", "knee"),
        ("file_brain_AXT1_202_2020018.h5", "AXT1", "brain"),
        ("file_brain_AXT1PRE_203_6000261.h5", "AXT1PRE", "brain"),
        ("file_brain_AXT1POST_201_6002714.h5", "AXT1POST", "brain"),
        ("file_brain_AXT2_200_6002551.h5", "AXT2", "brain"),
        ("file_brain_AXFLAIR_201_6003001.h5", "AXFLAIR", "brain"),
        ("file_brain_AXT2_200_6002551.h5", None, "brain"),
        ("file1000001.h5", None, "knee"),
        ("renamed.h5", "AXFLAIR", "brain"),
        ("renamed.h5", None, None),
        ("renamed.h5", "SAGT1", None),
    ],
)
def test_anatomy_from_acquisition_then_name(fname: str, acquisition: str | None, anatomy: str | None) -> None:
    assert anatomy_of(fname, acquisition) == anatomy


def test_volume_anatomy_for_a_brain_file(tmp_path: Path) -> None:
    path = write_fastmri_volume(
        tmp_path / "file_brain_AXT1POST_201_6002714.h5",
        challenge="multicoil",
        anatomy="brain",
        num_slices=1,
        kspace_shape=(16, 8),
        recon_size=(8, 8),
        num_coils=2,
        acquisition="AXT1POST",
    )
    assert inspect_volume(path).anatomy == "brain"
    with h5py.File(path, "r+") as hf:
        del hf.attrs["acquisition"]
    assert inspect_volume(path).anatomy == "brain"


def test_zero_kspace_padding_numpy_torch_and_clipping() -> None:
    data = np.arange(1, 2 * 3 * 8 + 1, dtype=np.float32).reshape(2, 3, 8).astype(np.complex64)
    out = zero_kspace_padding(data, (2, 6))
    assert isinstance(out, np.ndarray) and np.all(data != 0)  # the input is left alone
    assert np.all(out[..., :2] == 0) and np.all(out[..., 6:] == 0)
    np.testing.assert_array_equal(out[..., 2:6], data[..., 2:6])
    encoding = EncodingInfo((16, 8, 1), (8, 8, 1), padding_left=-3, padding_right=11)
    np.testing.assert_array_equal(zero_kspace_padding(data, encoding), data)
    tensor = torch.from_numpy(data)
    out_t = zero_kspace_padding(tensor, (-1, 5))
    assert isinstance(out_t, torch.Tensor) and torch.all(tensor != 0)
    assert torch.all(out_t[..., 5:] == 0) and torch.equal(out_t[..., :5], tensor[..., :5])
    with pytest.raises(ValueError, match=r"padding bounds \(8, 8\).*leave no acquired column"):
        zero_kspace_padding(data, (9, 12))
