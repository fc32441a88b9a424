"""The synthetic fastMRI-format dataset: header, plan, file contents, determinism and the CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from smug.mri import rss, sens_combine, fft2c, ifft2c, center_crop
from smug.data import fft2c_np, ifft2c_np, ismrmrd_header, parse_ismrmrd_header, read_sens_maps, sens_map_path
from smug.data import synthesize_volume, SyntheticVolume, volume_paths, volume_plan, VolumeSpec
from smug.data import write_synthetic_volume

REPO = Path(__file__).resolve().parents[1]
RECON, KSPACE = (16, 16), (32, 16)
SMALL = dict(num_slices=3, recon_size=RECON, kspace_size=KSPACE, num_coils=3)


def spec(anatomy: str = "knee", split: str = "train") -> VolumeSpec:
    return next(s for s in volume_plan(5, {split: 1}, [anatomy]) if s.anatomy == anatomy)


def write(
    path: Path, challenge: str, anatomy: str = "knee", noise_level: float = 0.01, sens: Path | None = None
) -> None:
    write_synthetic_volume(
        path, spec(anatomy), challenge=challenge, noise_level=noise_level, sens_path=sens, **SMALL
    )


@pytest.mark.parametrize("shape", [(6, 8), (5, 7)])
def test_numpy_fft_matches_torch(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((2,) + shape) + 1j * rng.standard_normal((2,) + shape)).astype(np.complex64)
    np.testing.assert_allclose(fft2c_np(x), fft2c(torch.from_numpy(x)).numpy(), atol=1e-5)
    np.testing.assert_allclose(ifft2c_np(x), ifft2c(torch.from_numpy(x)).numpy(), atol=1e-5)
    np.testing.assert_allclose(ifft2c_np(fft2c_np(x)), x, atol=1e-5)


def test_header_round_trip() -> None:
    xml = ismrmrd_header((640, 368, 1), (320, 320, 1), center=183, maximum=365)
    assert b'xmlns="http://www.ismrm.org/ISMRMRD"' in xml and b"<ismrmrdHeader" in xml
    info = parse_ismrmrd_header(xml)
    assert info.enc_size == (640, 368, 1) and info.recon_size == (320, 320, 1)
    # fastMRI's _retrieve_metadata: 368 // 2 - 183 = 1, then 1 + 365 + 1 = 367.
    assert (info.padding_left, info.padding_right) == (1, 367)


def test_header_rejects_bad_sizes() -> None:
    with pytest.raises(ValueError, match="enc_size"):
        ismrmrd_header((640, 368), (320, 320, 1), center=184, maximum=367)
    with pytest.raises(ValueError, match="center"):
        ismrmrd_header((640, 368, 1), (320, 320, 1), center=400, maximum=367)


def test_plan_names_seeds_and_stability() -> None:
    plan = volume_plan(1, {"train": 2, "val": 1, "test": 1}, ["knee", "brain"])
    assert [s.fname for s in plan if s.split == "train"] == [
        "file1000001.h5",
        "file1000002.h5",
        "file_brain_AXT2_200_6002001.h5",
        "file_brain_AXT2_200_6002002.h5",
    ]
    assert len({s.fname for s in plan}) == len(plan) == 8
    assert len({s.seed for s in plan}) == 8
    assert all(len(s.patient_id) == 64 and int(s.patient_id, 16) >= 0 for s in plan)
    assert plan == volume_plan(1, {"train": 2, "val": 1, "test": 1}, ["knee", "brain"])
    # Growing one split renames and reseeds nothing elsewhere; another dataset seed changes seeds.
    grown = volume_plan(1, {"train": 5, "val": 1, "test": 1}, ["knee", "brain"])
    assert set(plan) <= set(grown)
    assert {s.seed for s in volume_plan(2, {"train": 2}, ["knee"])}.isdisjoint(s.seed for s in plan)


@pytest.mark.parametrize(
    "volumes, anatomies, match",
    [
        ({"training": 1}, ["knee"], "training"),
        ({"train": 1}, ["ankle"], "ankle"),
        ({"train": -1}, ["knee"], "train"),
    ],
)
def test_plan_rejects_bad_input(volumes: dict, anatomies: list, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        volume_plan(0, volumes, anatomies)


def test_paths() -> None:
    plan = volume_plan(0, {"val": 1}, ["brain"])
    assert volume_paths("root", "multicoil", plan) == [
        Path("root/multicoil_val/file_brain_AXT2_200_6012001.h5")
    ]
    assert sens_map_path("root", "file1.h5") == Path("root/sens_maps/file1.h5")
    with pytest.raises(ValueError, match="challenge"):
        volume_paths("root", "multi", plan)


@pytest.mark.parametrize("challenge, anatomy", [("singlecoil", "knee"), ("multicoil", "brain")])
def test_file_layout_matches_fastmri(tmp_path: Path, challenge: str, anatomy: str) -> None:
    path = tmp_path / "vol.h5"
    write(path, challenge, anatomy)
    recon_key = {"singlecoil": "reconstruction_esc", "multicoil": "reconstruction_rss"}[challenge]
    with h5py.File(path, "r") as hf:
        assert sorted(hf.keys()) == sorted(["ismrmrd_header", "kspace", recon_key])
        kspace_shape = (3, 32, 16) if challenge == "singlecoil" else (3, 3, 32, 16)
        assert hf["kspace"].dtype == np.complex64 and hf["kspace"].shape == kspace_shape
        assert hf[recon_key].dtype == np.float32 and hf[recon_key].shape == (3, 16, 16)
        assert sorted(hf.attrs.keys()) == ["acquisition", "max", "norm", "patient_id"]
        assert hf.attrs["acquisition"] == {"knee": "CORPD_FBK", "brain": "AXT2"}[anatomy]
        assert hf.attrs["patient_id"] == spec(anatomy).patient_id
        target = hf[recon_key][()]
        np.testing.assert_allclose(hf.attrs["max"], target.max(), rtol=1e-6)
        np.testing.assert_allclose(hf.attrs["norm"], np.linalg.norm(target), rtol=1e-6)
        info = parse_ismrmrd_header(hf["ismrmrd_header"][()])
    assert info.enc_size == (32, 16, 1) and info.recon_size == (16, 16, 1)
    assert (info.padding_left, info.padding_right) == (0, 16)


def test_targets_follow_from_kspace(tmp_path: Path) -> None:
    multi, single = tmp_path / "multi.h5", tmp_path / "single.h5"
    write(multi, "multicoil")
    write(single, "singlecoil")
    with h5py.File(multi, "r") as hf:
        kspace, target = torch.from_numpy(hf["kspace"][()]), hf["reconstruction_rss"][()]
    expected = center_crop(rss(ifft2c(kspace)), RECON).numpy()
    np.testing.assert_allclose(target, expected, rtol=1e-4, atol=1e-6)
    with h5py.File(single, "r") as hf:
        kspace, target = torch.from_numpy(hf["kspace"][()]), hf["reconstruction_esc"][()]
    np.testing.assert_allclose(target, center_crop(ifft2c(kspace).abs(), RECON).numpy(), rtol=1e-4, atol=1e-6)


def test_noise_level_sets_kspace_noise() -> None:
    clean = synthesize_volume(spec(), challenge="singlecoil", noise_level=0.0, **SMALL)
    noisy = synthesize_volume(spec(), challenge="singlecoil", noise_level=0.05, **SMALL)
    measured = np.std(noisy.kspace - clean.kspace)
    assert measured == pytest.approx(0.05 * np.abs(clean.images).max(), rel=0.1)


def test_byte_identical_regeneration(tmp_path: Path) -> None:
    for name in ("a", "b"):
        write(tmp_path / f"{name}.h5", "multicoil", sens=tmp_path / f"{name}_sens.h5")
    assert (tmp_path / "a.h5").read_bytes() == (tmp_path / "b.h5").read_bytes()
    assert (tmp_path / "a_sens.h5").read_bytes() == (tmp_path / "b_sens.h5").read_bytes()
    assert not list(tmp_path.glob(".*.part"))  # atomic writes leave no temporaries


def test_sense_combination_recovers_image(tmp_path: Path) -> None:
    path, sens_path = tmp_path / "vol.h5", tmp_path / "sens.h5"
    write(path, "multicoil", "brain", noise_level=0.0, sens=sens_path)
    volume: SyntheticVolume = synthesize_volume(
        spec("brain"), challenge="multicoil", noise_level=0.0, **SMALL
    )
    with h5py.File(path, "r") as hf:
        kspace = torch.from_numpy(hf["kspace"][()])
    coil_images = center_crop(ifft2c(kspace), RECON)
    for index in range(3):
        maps = torch.from_numpy(read_sens_maps(sens_path, index))
        np.testing.assert_allclose((np.abs(maps.numpy()) ** 2).sum(0), 1.0, rtol=1e-5)
        combined = sens_combine(coil_images[index], maps).numpy()
        image = volume.images[index]
        assert np.linalg.norm(combined - image) <= 1e-5 * np.linalg.norm(image)


def test_bad_generation_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="kspace_size"):
        synthesize_volume(
            spec(),
            challenge="multicoil",
            num_slices=2,
            recon_size=(16, 16),
            kspace_size=(32, 8),
            num_coils=2,
            noise_level=0.0,
        )
    with pytest.raises(ValueError, match="num_coils"):
        synthesize_volume(
            spec(),
            challenge="multicoil",
            num_slices=2,
            recon_size=(8, 8),
            kspace_size=(8, 8),
            num_coils=0,
            noise_level=0.0,
        )
    with pytest.raises(ValueError, match="sens_path"):
        write(tmp_path / "x.h5", "singlecoil", sens=tmp_path / "s.h5")
    assert not (tmp_path / "x.h5").exists()


def run_script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "scripts" / "make_synthetic.py"), *args], capture_output=True, text=True
    )


def test_script_writes_planned_files(tmp_path: Path) -> None:
    root = tmp_path / "synthetic"
    result = run_script(
        "--root",
        str(root),
        "--challenge",
        "multicoil",
        "--anatomies",
        "knee",
        "brain",
        "--volumes",
        "train=1",
        "test=1",
        "--slices",
        "2",
        "--recon-size",
        "8",
        "8",
        "--kspace-size",
        "16",
        "8",
        "--coils",
        "2",
        "--noise-level",
        "0.01",
        "--seed",
        "3",
    )
    assert result.returncode == 0, result.stderr
    plan = volume_plan(3, {"train": 1, "test": 1}, ["knee", "brain"])
    expected = set(volume_paths(root, "multicoil", plan)) | {sens_map_path(root, s.fname) for s in plan}
    assert {p for p in root.rglob("*") if p.is_file()} == expected


@pytest.mark.parametrize(
    "args, message",
    [
        (["--anatomies", "ankle"], "ankle"),
        (["--recon-size", "16", "16", "--kspace-size", "8", "16"], "--kspace-size"),
        (["--coils", "0"], "--coils"),
        (["--volumes", "train:2"], "--volumes"),
    ],
)
def test_script_rejects_bad_arguments(tmp_path: Path, args: list[str], message: str) -> None:
    result = run_script("--root", str(tmp_path), *args)
    assert result.returncode != 0
    assert result.stderr.startswith("error:") and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not any(tmp_path.iterdir())


def test_generator_does_not_import_torch() -> None:
    code = "import sys, smug.data.synthetic; assert 'torch' not in sys.modules, 'torch imported'"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0
