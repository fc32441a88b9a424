"""The embedded synthetic dataset: deterministic phantom volumes written in fastMRI's exact HDF5 layout.

fastMRI itself needs a data-use agreement, so the default pipeline run uses these volumes; they go
through the same reader (:mod:`smug.data.fastmri_io`) as the real files. A volume is fully determined by
its :class:`VolumeSpec` and the generation arguments, down to the bytes of the file.

Forward model per slice: a phantom image ``x`` on the k-space grid ``(H, W)`` whose object is framed
by the central recon region ``(h, w)`` (``H`` is typically ``2 h``: fastMRI's readout oversampling;
the head lies inside the recon region, the leg runs on beyond it as in real knee data); multicoil data
are ``S_c x`` for birdcage sensitivities ``S``, single-coil data ``x`` itself (fastMRI's "emulated
single coil"); k-space is the centred orthonormal FFT plus complex Gaussian noise.

numpy and h5py only: the generator runs as its own pipeline job and must not import torch.
"""

from __future__ import annotations

import hashlib
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import h5py
import numpy as np

from smug.data.coil_sensitivities import birdcage_sensitivities, normalize_sensitivities
from smug.data.ismrmrd import ISMRMRD_NAMESPACE
from smug.data.fastmri_io import RECON_KEYS, SENS_MAPS_KEY
from smug.utils import atomic_path
from smug.data.phantoms import PHANTOMS

SPLITS = ("train", "val", "test")
CHALLENGES = tuple(RECON_KEYS)
ACQUISITIONS = {"knee": "CORPD_FBK", "brain": "AXT2"}
# Volume numbers leave room for this many volumes per (split, anatomy), so that changing one
# split's count never renames another split's files (Snakemake targets stay stable).
MAX_VOLUMES_PER_SPLIT = 9999
_FIRST_VOLUME_NUMBER = {"knee": 1_000_001, "brain": 6_002_001}
_FILE_PATTERN = {"knee": "file{number}.h5", "brain": "file_brain_AXT2_200_{number}.h5"}
_FOV_MM = {"knee": 140.0, "brain": 220.0}
_SLICE_THICKNESS_MM = {"knee": 3.0, "brain": 5.0}
# Pin the HDF5 format range so files do not change with the library version; with track_times off
# and a fixed write order, the same spec gives byte-identical files.
_LIBVER = ("earliest", "v110")
_GYROMAGNETIC_HZ_PER_T = 42_577_478.0


@dataclass(frozen=True)
class VolumeSpec:
    """One synthetic volume: its split, anatomy, fastMRI-style file name, generation seed and the
    (deterministic) patient id written to its attributes."""

    split: str
    anatomy: str
    fname: str
    seed: int
    patient_id: str


@dataclass(frozen=True)
class SyntheticVolume:
    """Arrays of one generated volume.

    ``kspace`` complex64 ``(S, H, W)`` single-coil or ``(S, C, H, W)`` multicoil; ``target`` float32
    ``(S, h, w)`` (the ``reconstruction_esc`` / ``reconstruction_rss``); ``images`` the noise-free
    complex64 phantom ``(S, h, w)``; ``sens_maps`` complex64 ``(S, C, h, w)`` or ``None``
    (single-coil).
    """

    kspace: np.ndarray
    target: np.ndarray
    images: np.ndarray
    sens_maps: np.ndarray | None


def fft2c_np(image: np.ndarray) -> np.ndarray:
    """Centred orthonormal 2-D FFT over the last two axes (numpy twin of :func:`smug.mri.fftc.fft2c`)."""
    shifted = np.fft.ifftshift(image, axes=(-2, -1))
    return np.fft.fftshift(np.fft.fft2(shifted, axes=(-2, -1), norm="ortho"), axes=(-2, -1))


def ifft2c_np(kspace: np.ndarray) -> np.ndarray:
    """Inverse of :func:`fft2c_np` (numpy twin of :func:`smug.mri.fftc.ifft2c`)."""
    shifted = np.fft.ifftshift(kspace, axes=(-2, -1))
    return np.fft.fftshift(np.fft.ifft2(shifted, axes=(-2, -1), norm="ortho"), axes=(-2, -1))


def center_crop_np(x: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Centre crop of the last two axes with fastMRI's offsets ``(H - h) // 2`` (numpy, no torch)."""
    h, w = int(shape[0]), int(shape[1])
    big_h, big_w = x.shape[-2], x.shape[-1]
    if not (0 < h <= big_h and 0 < w <= big_w):
        raise ValueError(f"cannot centre-crop an image of shape {(big_h, big_w)} to {(h, w)}")
    top, left = (big_h - h) // 2, (big_w - w) // 2
    return x[..., top : top + h, left : left + w]


def ismrmrd_header(
    enc_size: Sequence[int],
    recon_size: Sequence[int],
    center: int,
    maximum: int,
    *,
    fov_mm: float = 140.0,
    slice_thickness_mm: float = 3.0,
    field_strength_t: float = 3.0,
) -> bytes:
    """An ISMRMRD XML header with fastMRI's fields.

    Args:
        enc_size: encoded matrix ``(x, y, z)``: x the readout (k-space rows ``H``), y the
            phase-encode axis (k-space columns ``W``).
        recon_size: reconstruction matrix ``(x, y, z)``.
        center: ``kspace_encoding_step_1`` centre, the column of the k-space centre.
        maximum: ``kspace_encoding_step_1`` maximum, the last acquired column.
        fov_mm: in-plane field of view of the reconstruction along x; pixels are square, so the
            other fields of view follow from the matrix sizes.
        slice_thickness_mm: the z field of view.
        field_strength_t: main field, also sets the proton resonance frequency.

    Returns:
        UTF-8 XML bytes.
    """
    enc = _matrix_size(enc_size, "enc_size")
    recon = _matrix_size(recon_size, "recon_size")
    if not 0 <= int(center) <= int(maximum):
        raise ValueError(f"need 0 <= center <= maximum, got center={center}, maximum={maximum}")
    pixel_mm = fov_mm / recon[0]

    def tag(name: str) -> str:
        return f"{{{ISMRMRD_NAMESPACE}}}{name}"

    def child(parent: ET.Element, name: str, text: str | None = None) -> ET.Element:
        element = ET.SubElement(parent, tag(name))
        if text is not None:
            element.text = text
        return element

    def space(parent: ET.Element, name: str, size: tuple[int, int, int]) -> None:
        node = child(parent, name)
        matrix = child(node, "matrixSize")
        fov = child(node, "fieldOfView_mm")
        for axis, n, mm in zip("xyz", size, (pixel_mm * size[0], pixel_mm * size[1], slice_thickness_mm)):
            child(matrix, axis, str(n))
            child(fov, axis, f"{mm:g}")

    def limit(parent: ET.Element, name: str, low: int, high: int, mid: int) -> None:
        node = child(parent, name)
        for field, value in (("minimum", low), ("maximum", high), ("center", mid)):
            child(node, field, str(value))

    root = ET.Element(tag("ismrmrdHeader"))
    system = child(root, "acquisitionSystemInformation")
    child(system, "systemFieldStrength_T", f"{field_strength_t:g}")
    conditions = child(root, "experimentalConditions")
    child(conditions, "H1resonanceFrequency_Hz", str(int(round(_GYROMAGNETIC_HZ_PER_T * field_strength_t))))
    encoding = child(root, "encoding")
    space(encoding, "encodedSpace", enc)
    space(encoding, "reconSpace", recon)
    limits = child(encoding, "encodingLimits")
    limit(limits, "kspace_encoding_step_1", 0, int(maximum), int(center))
    limit(limits, "kspace_encoding_step_2", 0, 0, 0)
    limit(limits, "slice", 0, 0, 0)
    child(encoding, "trajectory", "cartesian")
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True, default_namespace=ISMRMRD_NAMESPACE)


def volume_plan(seed: int, volumes: dict[str, int], anatomies: Sequence[str]) -> list[VolumeSpec]:
    """Deterministic names and seeds of every synthetic volume.

    Args:
        seed: dataset seed.
        volumes: split (``train``/``val``/``test``) -> number of volumes per anatomy.
        anatomies: subset of ``knee``, ``brain``.

    Returns:
        specs ordered by split (train, val, test), then anatomy as given, then index. A volume's name
        and seed depend only on ``(seed, split, anatomy, index)``, never on the other counts.
    """
    if not _is_int(seed):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    unknown_splits = sorted(set(volumes) - set(SPLITS))
    if unknown_splits:
        raise ValueError(f"unknown split(s) {unknown_splits} in volumes; expected some of {list(SPLITS)}")
    _check_anatomies(anatomies)
    for split, count in volumes.items():
        if not (_is_int(count) and 0 <= count <= MAX_VOLUMES_PER_SPLIT):
            raise ValueError(
                f"volumes[{split!r}] must be an integer in [0, {MAX_VOLUMES_PER_SPLIT}], got {count!r}"
            )

    plan = []
    for split_index, split in enumerate(SPLITS):
        for anatomy in anatomies:
            for index in range(int(volumes.get(split, 0))):
                number = _FIRST_VOLUME_NUMBER[anatomy] + (MAX_VOLUMES_PER_SPLIT + 1) * split_index + index
                volume_seed = _derive_seed(int(seed), split, anatomy, index)
                plan.append(
                    VolumeSpec(
                        split=split,
                        anatomy=anatomy,
                        fname=_FILE_PATTERN[anatomy].format(number=number),
                        seed=volume_seed,
                        patient_id=hashlib.sha256(f"synthetic-patient/{volume_seed}".encode()).hexdigest(),
                    )
                )
    return plan


def volume_paths(root: str | os.PathLike, challenge: str, plan: Sequence[VolumeSpec]) -> list[Path]:
    """``{root}/{challenge}_{split}/{fname}`` for every spec, as fastMRI's archives unpack."""
    _check_challenge(challenge)
    return [Path(root) / f"{challenge}_{spec.split}" / spec.fname for spec in plan]


def sens_map_path(root: str | os.PathLike, fname: str) -> Path:
    """``{root}/sens_maps/{fname}``: the true sensitivity maps of a multicoil volume."""
    return Path(root) / "sens_maps" / fname


def synthesize_volume(
    spec: VolumeSpec,
    *,
    challenge: str,
    num_slices: int,
    recon_size: Sequence[int],
    kspace_size: Sequence[int],
    num_coils: int,
    noise_level: float,
) -> SyntheticVolume:
    """Generate the arrays of one volume (see :func:`write_synthetic_volume` for the arguments)."""
    _check_challenge(challenge)
    _check_anatomies([spec.anatomy])
    if not (_is_int(num_slices) and num_slices >= 1):
        raise ValueError(f"num_slices must be a positive integer, got {num_slices!r}")
    h, w = _size_2d(recon_size, "recon_size")
    big_h, big_w = _size_2d(kspace_size, "kspace_size")
    if big_h < h or big_w < w:
        raise ValueError(f"kspace_size {(big_h, big_w)} must be at least recon_size {(h, w)} on both axes")
    if challenge == "multicoil" and not (_is_int(num_coils) and num_coils >= 1):
        raise ValueError(f"num_coils must be a positive integer for multicoil data, got {num_coils!r}")
    if not np.isfinite(noise_level) or noise_level < 0:
        raise ValueError(f"noise_level must be a non-negative number, got {noise_level!r}")

    # Independent streams, so e.g. the coil count does not change the phantom.
    phantom_seq, coil_seq, noise_seq = np.random.SeedSequence(spec.seed).spawn(3)
    sample_params, render = PHANTOMS[spec.anatomy]
    params = sample_params(np.random.default_rng(phantom_seq))
    positions = np.linspace(-1.0, 1.0, num_slices) if num_slices > 1 else np.zeros(1)
    # Rendered over the whole oversampled grid, framed on the recon region: anatomy that reaches
    # past the recon region (the leg) continues smoothly instead of ending in an artificial edge.
    full = np.stack([render(params, (big_h, big_w), float(z), frame=(h, w)) for z in positions])
    images = np.ascontiguousarray(center_crop_np(full, (h, w)))
    full = full.astype(np.complex128)

    sens_maps = None
    if challenge == "multicoil":
        sens_full = birdcage_sensitivities(int(num_coils), (big_h, big_w), np.random.default_rng(coil_seq))
        # Pointwise normalisation survives cropping; renormalising keeps that true by construction.
        sens_crop = normalize_sensitivities(center_crop_np(sens_full, (h, w)).astype(np.complex128))
        sens_maps = np.ascontiguousarray(
            np.broadcast_to(sens_crop.astype(np.complex64), (num_slices, int(num_coils), h, w))
        )
        signal = sens_full[None].astype(np.complex128) * full[:, None]
    else:
        signal = full

    kspace = fft2c_np(signal)
    sigma = noise_level * float(np.abs(images).max())
    if sigma > 0:
        # Complex noise with E|n|^2 = sigma^2 (sigma / sqrt(2) per real component); the FFT is
        # orthonormal, so sigma is also the noise level of every image pixel.
        noise = np.random.default_rng(noise_seq).standard_normal((2,) + kspace.shape)
        kspace = kspace + (sigma / np.sqrt(2.0)) * (noise[0] + 1j * noise[1])
    kspace = kspace.astype(np.complex64)

    # The target is computed from the stored k-space, exactly as fastMRI's targets relate to theirs.
    coil_images = center_crop_np(ifft2c_np(kspace.astype(np.complex128)), (h, w))
    if challenge == "multicoil":
        target = np.sqrt((np.abs(coil_images) ** 2).sum(axis=1))
    else:
        target = np.abs(coil_images)
    return SyntheticVolume(
        kspace=kspace, target=target.astype(np.float32), images=images, sens_maps=sens_maps
    )


def write_synthetic_volume(
    path: str | os.PathLike,
    spec: VolumeSpec,
    *,
    challenge: str,
    num_slices: int,
    recon_size: Sequence[int],
    kspace_size: Sequence[int],
    num_coils: int,
    noise_level: float,
    sens_path: str | os.PathLike | None = None,
) -> None:
    """Generate one volume and write it in fastMRI's layout (and its true sensitivity maps).

    Args:
        path: output ``.h5``.
        spec: from :func:`volume_plan`.
        challenge: ``singlecoil`` or ``multicoil``.
        num_slices: slices, at positions evenly spaced over [-1, 1] of the phantom volume.
        recon_size: ``(h, w)`` of the target, where the object lies.
        kspace_size: ``(H, W)`` of the k-space grid, at least ``recon_size``.
        num_coils: coils of multicoil data (ignored for single-coil).
        noise_level: k-space noise std relative to the volume's maximum image magnitude.
        sens_path: multicoil only: where to write ``sens_maps`` complex64 ``(S, C, h, w)``, the true
            maps cropped to the recon size.

    Both files are written atomically; the same arguments give byte-identical files.
    """
    if sens_path is not None and challenge != "multicoil":
        raise ValueError(f"sens_path is only meaningful for multicoil data, got challenge={challenge!r}")
    volume = synthesize_volume(
        spec,
        challenge=challenge,
        num_slices=num_slices,
        recon_size=recon_size,
        kspace_size=kspace_size,
        num_coils=num_coils,
        noise_level=noise_level,
    )
    big_h, big_w = volume.kspace.shape[-2:]
    h, w = volume.target.shape[-2:]
    header = ismrmrd_header(
        (big_h, big_w, 1),
        (h, w, 1),
        center=big_w // 2,
        maximum=big_w - 1,
        fov_mm=_FOV_MM[spec.anatomy],
        slice_thickness_mm=_SLICE_THICKNESS_MM[spec.anatomy],
    )
    target = volume.target
    with atomic_path(path) as tmp, h5py.File(tmp, "w", libver=_LIBVER) as hf:
        hf.create_dataset("ismrmrd_header", data=header, dtype=h5py.string_dtype("utf-8"), track_times=False)
        hf.create_dataset("kspace", data=volume.kspace, track_times=False)
        hf.create_dataset(RECON_KEYS[challenge], data=target, track_times=False)
        hf.attrs["acquisition"] = ACQUISITIONS[spec.anatomy]
        hf.attrs["max"] = np.float64(target.max())
        hf.attrs["norm"] = np.float64(np.linalg.norm(target.astype(np.float64)))
        hf.attrs["patient_id"] = spec.patient_id
    if sens_path is not None:
        with atomic_path(sens_path) as tmp, h5py.File(tmp, "w", libver=_LIBVER) as hf:
            hf.create_dataset(SENS_MAPS_KEY, data=volume.sens_maps, track_times=False)


def _derive_seed(seed: int, split: str, anatomy: str, index: int) -> int:
    # A cryptographic hash, not Python's hash(): stable across processes and Python versions.
    digest = hashlib.sha256(f"smug-synthetic/{seed}/{split}/{anatomy}/{index}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _check_challenge(challenge: str) -> None:
    if challenge not in CHALLENGES:
        raise ValueError(f"unknown challenge {challenge!r}; expected one of {list(CHALLENGES)}")


def _check_anatomies(anatomies: Sequence[str]) -> None:
    if isinstance(anatomies, str):
        raise ValueError(f"anatomies must be a list of names, got the string {anatomies!r}")
    unknown = [name for name in anatomies if name not in PHANTOMS]
    if unknown:
        raise ValueError(f"unknown anatomy {unknown}; expected some of {sorted(PHANTOMS)}")
    if len(set(anatomies)) != len(anatomies):
        raise ValueError(f"anatomies listed twice: {list(anatomies)}")


def _matrix_size(size: Sequence[int], name: str) -> tuple[int, int, int]:
    values = tuple(int(n) for n in size)
    if len(values) != 3 or min(values) < 1:
        raise ValueError(f"{name} must be three positive integers (x, y, z), got {tuple(size)}")
    return values  # type: ignore[return-value]


def _size_2d(size: Sequence[int], name: str) -> tuple[int, int]:
    values = tuple(int(n) for n in size)
    if len(values) != 2 or min(values) < 1:
        raise ValueError(f"{name} must be two positive integers (rows, columns), got {tuple(size)}")
    return values  # type: ignore[return-value]
