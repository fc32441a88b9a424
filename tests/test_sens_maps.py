"""ESPIRiT sensitivity maps (smug.data.sens_maps) and scripts/estimate_sens_maps.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from smug.data import birdcage_sensitivities, calibration_region, espirit_maps, estimate_volume_maps
from smug.data import FastMRIFormatError, ismrmrd_header, maps_file_matches, read_sens_maps, select_slices
from smug.data import write_sens_maps
from smug.mri import fft2c, ifft2c, center_crop

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "estimate_sens_maps.py"
COILS, SIZE = 8, 48


def smooth_object(shape: tuple[int, int], shift: float = 0.0) -> np.ndarray:
    """A soft-edged ellipse with smooth magnitude and phase, complex128 (H, W)."""
    v = np.linspace(-1, 1, shape[0])[:, None]
    u = np.linspace(-1, 1, shape[1])[None, :]
    radius_sq = ((v - shift) / 0.7) ** 2 + (u / 0.55) ** 2
    support = 1 / (1 + np.exp((radius_sq - 1) / 0.05))
    return support * (1 + 0.3 * np.cos(3 * u + shift)) * np.exp(1j * (0.5 * v + 0.3 * u))


@pytest.fixture(scope="module")
def slice_data() -> dict[str, torch.Tensor]:
    # A random rotation breaks the coils' symmetry, so mirrored maps could not pass.
    true_maps = torch.from_numpy(birdcage_sensitivities(COILS, (SIZE, SIZE), np.random.default_rng(1)))
    image = torch.from_numpy(smooth_object((SIZE, SIZE)).astype(np.complex64))
    kspace = fft2c(true_maps * image)
    return {"kspace": kspace, "maps": true_maps, "image": image, "inside": image.abs() > 0.3}


@pytest.fixture(scope="module")
def estimate(slice_data: dict[str, torch.Tensor]) -> torch.Tensor:
    return espirit_maps(slice_data["kspace"], 24)


def test_maps_match_true_maps_inside_object(slice_data: dict, estimate: torch.Tensor) -> None:
    inside = slice_data["inside"]
    assert estimate.dtype == torch.complex64 and estimate.shape == (COILS, SIZE, SIZE)
    # Equal up to a per-pixel phase: |<S_hat, S>| = 1 for unit vectors.
    overlap = (estimate.conj() * slice_data["maps"]).sum(0).abs()
    assert overlap[inside].min() > 0.995
    energy = (estimate.abs() ** 2).sum(0)
    torch.testing.assert_close(energy[inside], torch.ones_like(energy[inside]), atol=1e-4, rtol=0)
    # Far background has no signal: its eigenvalue falls below the crop and the maps are zero there.
    assert energy[0, 0] == 0 and set(torch.unique(energy.round(decimals=3)).tolist()) <= {0.0, 1.0}


def test_sense_combination_reproduces_image(slice_data: dict, estimate: torch.Tensor) -> None:
    inside = slice_data["inside"]
    combined = (estimate.conj() * ifft2c(slice_data["kspace"])).sum(0)
    magnitude = slice_data["image"].abs()
    nrmse = (combined.abs() - magnitude)[inside].norm() / magnitude[inside].norm()
    assert nrmse < 0.02


def test_phase_follows_dominant_virtual_coil(slice_data: dict, estimate: torch.Tensor) -> None:
    rows, cols = calibration_region((SIZE, SIZE), 24)
    calib = slice_data["kspace"][:, rows, cols].reshape(COILS, -1).to(torch.complex128)
    weights = torch.linalg.eigh(calib @ calib.conj().T)[1][:, -1].to(torch.complex64)
    reference = (weights.conj()[:, None, None] * estimate).sum(0)
    inside = slice_data["inside"]
    assert reference[inside].imag.abs().max() < 1e-4 and reference[inside].real.min() > 0


def test_noisy_kspace_still_gives_good_maps(slice_data: dict) -> None:
    gen = torch.Generator().manual_seed(0)
    kspace = slice_data["kspace"]
    noise = torch.randn(kspace.shape, dtype=torch.complex64, generator=gen)
    # The FFT is orthonormal: this is 1% of the image's peak magnitude as noise in every coil pixel.
    noisy = kspace + 0.01 * slice_data["image"].abs().max() * noise
    estimate = espirit_maps(noisy, 24)
    overlap = (estimate.conj() * slice_data["maps"]).sum(0).abs()
    assert overlap[slice_data["inside"]].mean() > 0.99


def test_out_shape_equals_crop_of_full_estimate(slice_data: dict, estimate: torch.Tensor) -> None:
    kspace = slice_data["kspace"][:, :, 4:-3]  # odd width: the crop offsets matter
    full = espirit_maps(kspace, 20)
    for shape in [(32, 20), (33, 41), (SIZE, kspace.shape[-1])]:
        torch.testing.assert_close(espirit_maps(kspace, 20, out_shape=shape), center_crop(full, shape))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_acs": 49}, "num_acs"),
        ({"num_acs": 4}, "kernel_size"),
        ({"num_acs": 24, "kernel_size": 25}, "kernel_size"),
        ({"num_acs": 24, "threshold": 0.0}, "threshold"),
        ({"num_acs": 24, "crop": 1.0}, "crop"),
        ({"num_acs": 24, "out_shape": (49, 10)}, "out_shape"),
    ],
)
def test_bad_settings_raise(slice_data: dict, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        espirit_maps(slice_data["kspace"], **kwargs)


def test_bad_kspace_raises(slice_data: dict) -> None:
    with pytest.raises(ValueError, match="complex tensor"):
        espirit_maps(slice_data["kspace"].abs(), 24)
    with pytest.raises(ValueError, match="complex tensor"):
        espirit_maps(slice_data["kspace"][0], 24)
    undersampled = slice_data["kspace"].clone()
    undersampled[:, :, SIZE // 2 + 3] = 0
    with pytest.raises(ValueError, match=rf"all-zero k-space columns \[{SIZE // 2 + 3}\]"):
        espirit_maps(undersampled, 24)


# Map files


def test_write_read_round_trip_with_slice_indices(tmp_path: Path) -> None:
    maps = (np.arange(3 * 2 * 4 * 5) * (1 + 1j)).reshape(3, 2, 4, 5).astype(np.complex64)
    path = tmp_path / "maps" / "file1.h5"
    attrs = {"estimator": "espirit", "num_acs": 24, "threshold": 0.02, "recon_size": [4, 5]}
    write_sens_maps(path, torch.from_numpy(maps), [5, 6, 7], attrs)
    for row, slice_idx in enumerate([5, 6, 7]):
        np.testing.assert_array_equal(read_sens_maps(path, slice_idx), maps[row])
    with h5py.File(path) as hf:
        assert hf["slice_indices"].dtype == np.int32 and hf.attrs["num_acs"] == 24
    assert maps_file_matches(path, [5, 6, 7], attrs)
    assert not maps_file_matches(path, [5, 6], attrs)
    assert not maps_file_matches(path, [5, 6, 7], {**attrs, "threshold": 0.03})
    assert not maps_file_matches(path, [5, 6, 7], {**attrs, "recon_size": [4, 6]})
    assert not maps_file_matches(tmp_path / "missing.h5", [5, 6, 7], attrs)
    assert [p.name for p in path.parent.iterdir()] == ["file1.h5"]  # no temporary left behind


def test_missing_slice_names_file_and_stored_slices(tmp_path: Path) -> None:
    path = tmp_path / "file1.h5"
    write_sens_maps(path, np.zeros((2, 2, 3, 3), np.complex64), [3, 4], {})
    with pytest.raises(
        FastMRIFormatError, match=r"file1\.h5: no maps for slice 0; the file has slices \[3, 4\]"
    ):
        read_sens_maps(path, 0)
    with pytest.raises(FastMRIFormatError, match="re-estimate"):
        read_sens_maps(path, 5)


def test_file_without_slice_indices_is_indexed_by_slice(tmp_path: Path) -> None:
    path = tmp_path / "synthetic.h5"
    maps = np.stack([np.full((2, 3, 3), i, np.complex64) for i in range(3)])
    with h5py.File(path, "w") as hf:
        hf.create_dataset("sens_maps", data=maps)
    np.testing.assert_array_equal(read_sens_maps(path, 2), maps[2])
    with pytest.raises(FastMRIFormatError, match=r"synthetic\.h5: slice 3 out of range \[0, 3\)"):
        read_sens_maps(path, 3)


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "file not found"),
        (b"not hdf5", "not a readable HDF5"),
        ({"other": np.zeros(3)}, "no 'sens_maps' dataset"),
        ({"sens_maps": np.zeros((2, 2, 3, 3))}, "must be complex"),
        ({"sens_maps": np.zeros((2, 2, 3, 3), np.complex64), "slice_indices": np.arange(3)}, "slice_indices"),
    ],
)
def test_bad_map_files_raise_naming_file(tmp_path: Path, content: object, message: str) -> None:
    path = tmp_path / "bad.h5"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif isinstance(content, dict):
        with h5py.File(path, "w") as hf:
            for key, value in content.items():
                hf.create_dataset(key, data=value)
    with pytest.raises(FastMRIFormatError, match=message) as info:
        read_sens_maps(path, 0)
    assert str(path) in str(info.value)


def test_write_rejects_bad_input(tmp_path: Path) -> None:
    maps = np.zeros((2, 2, 3, 3), np.complex64)
    with pytest.raises(ValueError, match="complex"):
        write_sens_maps(tmp_path / "a.h5", maps.real, [0, 1], {})
    with pytest.raises(ValueError, match="2 slice_indices for 1 slices"):
        write_sens_maps(tmp_path / "a.h5", maps[:1], [0, 1], {})
    with pytest.raises(ValueError, match="distinct"):
        write_sens_maps(tmp_path / "a.h5", maps, [1, 1], {})
    assert not any(tmp_path.iterdir())


# Volumes and the script

KSPACE_SHAPE, RECON = (48, 40), (32, 32)


def write_volume(path: Path, num_slices: int = 3, coils: int = COILS, multicoil: bool = True) -> np.ndarray:
    """A fastMRI-layout volume whose slices share true maps; returns the maps cropped to RECON."""
    maps = birdcage_sensitivities(coils, KSPACE_SHAPE, np.random.default_rng(2))
    images = np.stack([smooth_object(KSPACE_SHAPE, 0.1 * s) for s in range(num_slices)])
    coil_images = maps[None] * images[:, None] if multicoil else images
    kspace = fft2c(torch.from_numpy(coil_images.astype(np.complex64))).numpy()
    header = ismrmrd_header(
        (*KSPACE_SHAPE, 1), (*RECON, 1), center=KSPACE_SHAPE[1] // 2, maximum=KSPACE_SHAPE[1] - 1
    )
    target = center_crop(np.abs(images), RECON).astype(np.float32)
    with h5py.File(path, "w") as hf:
        hf.create_dataset("kspace", data=kspace)
        hf.create_dataset("reconstruction_rss" if multicoil else "reconstruction_esc", data=target)
        hf.create_dataset("ismrmrd_header", data=header)
    return center_crop(maps, RECON)


def inside_recon(slice_idx: int) -> np.ndarray:
    """Where the object of slice ``slice_idx`` of :func:`write_volume` is, in the recon crop."""
    return np.abs(center_crop(smooth_object(KSPACE_SHAPE, 0.1 * slice_idx), RECON)) > 0.3


def test_estimate_volume_maps_crops_to_recon_size(tmp_path: Path) -> None:
    true_maps = write_volume(tmp_path / "vol.h5")
    maps = estimate_volume_maps(tmp_path / "vol.h5", [2, 0], RECON, 24, kernel_size=5)
    assert maps.shape == (2, COILS, *RECON) and maps.dtype == np.complex64
    overlap = np.abs((maps.conj() * true_maps[None]).sum(1))
    for row, slice_idx in enumerate([2, 0]):
        assert overlap[row][inside_recon(slice_idx)].min() > 0.99
    with pytest.raises(FastMRIFormatError, match=r"vol\.h5: slice 3 out of range"):
        estimate_volume_maps(tmp_path / "vol.h5", [3], RECON, 24)
    with pytest.raises(FastMRIFormatError, match=r"vol\.h5: slice 0: num_acs"):
        estimate_volume_maps(tmp_path / "vol.h5", [0], RECON, 41)


def run_script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, cwd=REPO, timeout=120
    )


def test_script_end_to_end_and_resume(tmp_path: Path) -> None:
    volumes = [tmp_path / "data" / name for name in ("file_a.h5", "file_b.h5")]
    volumes[0].parent.mkdir()
    true_maps = write_volume(volumes[0], num_slices=3)
    write_volume(volumes[1], num_slices=2)
    out_dir = tmp_path / "maps"
    args = ["--volumes", *map(str, volumes), "--out-dir", str(out_dir), "--slices", "3", "--threads", "1"]
    args += ["--device", "cpu", "--kernel-size", "5"]
    result = run_script(*args)
    assert result.returncode == 0, result.stderr

    expected = {}
    for ref in select_slices(volumes, 3):
        expected.setdefault(ref.fname, []).append(ref.slice_idx)
    assert sorted(p.name for p in out_dir.iterdir()) == sorted(expected)
    for fname, slices in expected.items():
        with h5py.File(out_dir / fname) as hf:
            assert hf["slice_indices"][()].tolist() == slices
            assert hf["sens_maps"].shape == (len(slices), COILS, *RECON)
            assert hf.attrs["estimator"] == "espirit" and hf.attrs["kernel_size"] == 5
            assert hf.attrs["recon_size"].tolist() == list(RECON) and hf.attrs["source"].endswith(fname)
    slice_idx = expected["file_a.h5"][-1]
    maps = read_sens_maps(out_dir / "file_a.h5", slice_idx)
    assert np.abs((maps.conj() * true_maps).sum(0))[inside_recon(slice_idx)].min() > 0.99

    before = {p.name: p.stat().st_mtime_ns for p in out_dir.iterdir()}
    again = run_script(*args)
    assert again.returncode == 0, again.stderr
    assert again.stderr.count("skipped") == 2
    assert {p.name: p.stat().st_mtime_ns for p in out_dir.iterdir()} == before

    # A different setting re-estimates; so does a different slice selection.
    changed = run_script(*args[:-1], "4")
    assert changed.returncode == 0 and "skipped" not in changed.stderr
    with h5py.File(out_dir / "file_a.h5") as hf:
        assert hf.attrs["kernel_size"] == 4


def test_script_rejects_single_coil(tmp_path: Path) -> None:
    volume = tmp_path / "single.h5"
    write_volume(volume, multicoil=False)
    result = run_script("--volumes", str(volume), "--out-dir", str(tmp_path / "maps"), "--device", "cpu")
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1].startswith("error: single-coil volumes")
    assert "single.h5" in result.stderr and not (tmp_path / "maps").exists()


def test_script_help() -> None:
    result = run_script("--help")
    assert result.returncode == 0
    assert "--num-acs" in result.stdout and "Example" in result.stdout


def test_narrow_flair_volume_gets_maps_padded_like_its_images(tmp_path: Path) -> None:
    """fastMRI's FLAIR case: the image is narrower than the recon width; maps are estimated on the
    grid the data have and zero-padded as the slice dataset pads the coil images."""
    from smug.data import SliceDataset, select_slices
    from tests.fastmri_files import write_layout

    volume = write_layout(tmp_path, "flair_narrow")
    maps = estimate_volume_maps(volume, [1], (16, 16), num_acs=8, kernel_size=3)
    assert maps.shape == (1, 4, 16, 16)
    padded = np.r_[0:2, 14:16]
    assert not maps[..., padded].any() and np.abs(maps[..., 2:14]).max() > 0
    write_sens_maps(tmp_path / "maps" / volume.name, maps, [1], {"estimator": "espirit"})

    dataset = SliceDataset(select_slices([volume], 1), sens_dir=tmp_path / "maps")
    item = dataset[0]
    assert item["target"].shape == (16, 16) and torch.isfinite(item["target"].abs()).all()
    assert not item["target"][:, padded].abs().any() and item["target"].abs().max() == pytest.approx(1.0)
