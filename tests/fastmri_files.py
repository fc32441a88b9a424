"""Tiny fastMRI files in the exact layouts of the real data set, for tests.

Every kind the pipeline must read: single-coil knee (``kspace`` ``(S, H, W)``, ``reconstruction_esc``),
multicoil knee and brain (``kspace`` ``(S, C, H, W)``, ``reconstruction_rss``), a FLAIR-like brain
volume whose image is narrower than the recon size, and test files (already undersampled k-space, a
``mask`` ``(W,)``, attributes ``acceleration`` and ``num_low_frequency``, no reconstruction). Each has a
realistic ISMRMRD header whose ``kspace_encoding_step_1`` centre and maximum describe its k-space
padding columns, which hold zeros as in the real files.

Use :func:`write_fastmri_volume` for any combination, or :func:`write_layout` for the presets in
:data:`LAYOUTS`::

    path = write_layout(tmp_path, "multicoil_brain", sens_dir=tmp_path / "sens_maps")

Images are a smooth random object inside the recon frame times smooth random coil maps (normalised
so ``sum_c |S_c|^2 = 1``), so the data look like a plausible image, not noise.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Sequence

import h5py
import numpy as np

from smug.data import fft2c_np, FILE_MASK_KEY, ifft2c_np, ismrmrd_header, parse_ismrmrd_header, RECON_KEYS
from smug.data import SENS_MAPS_KEY
from smug.utils import atomic_path
from smug.mri import center_crop_or_pad

DEFAULT_ACQUISITION = {"knee": "CORPD_FBK", "brain": "AXT2"}
_FOV_MM = {"knee": 140.0, "brain": 220.0}
# fastMRI's test files: 8% of the columns at the centre for 4x, 4% for 8x.
_CENTER_FRACTION = {4: 0.08, 8: 0.04}

# Presets: fastMRI's layouts scaled down (real: knee k-space 640 x 368 with a few padding columns
# each side and 320 x 320 recon; brain 640 x 320; FLAIR images narrower than 320 columns).
LAYOUTS: dict[str, dict[str, Any]] = {
    "singlecoil_knee": dict(
        fname="file1000001.h5",
        challenge="singlecoil",
        anatomy="knee",
        num_slices=3,
        kspace_shape=(32, 24),
        recon_size=(16, 16),
        num_coils=1,
        acquisition="CORPD_FBK",
        padding=(2, 22),
    ),
    "multicoil_knee": dict(
        fname="file1000002.h5",
        challenge="multicoil",
        anatomy="knee",
        num_slices=3,
        kspace_shape=(32, 24),
        recon_size=(16, 16),
        num_coils=4,
        acquisition="CORPDFS_FBK",
        padding=(2, 22),
    ),
    "multicoil_brain": dict(
        fname="file_brain_AXT2_200_6002001.h5",
        challenge="multicoil",
        anatomy="brain",
        num_slices=3,
        kspace_shape=(32, 16),
        recon_size=(16, 16),
        num_coils=4,
        acquisition="AXT2",
        padding=None,
    ),
    "flair_narrow": dict(
        fname="file_brain_AXFLAIR_203_6002002.h5",
        challenge="multicoil",
        anatomy="brain",
        num_slices=3,
        kspace_shape=(32, 12),
        recon_size=(16, 16),
        num_coils=4,
        acquisition="AXFLAIR",
        padding=None,
    ),
    "singlecoil_knee_test": dict(
        fname="file1000003.h5",
        challenge="singlecoil",
        anatomy="knee",
        num_slices=2,
        kspace_shape=(32, 24),
        recon_size=(16, 16),
        num_coils=1,
        acquisition="CORPD_FBK",
        padding=(2, 22),
        test_file=True,
    ),
    "multicoil_knee_test": dict(
        fname="file1000004.h5",
        challenge="multicoil",
        anatomy="knee",
        num_slices=2,
        kspace_shape=(32, 24),
        recon_size=(16, 16),
        num_coils=4,
        acquisition="CORPD_FBK",
        padding=(2, 22),
        test_file=True,
    ),
}


def write_fastmri_volume(
    path: str | os.PathLike,
    *,
    challenge: str,
    anatomy: str,
    num_slices: int,
    kspace_shape: Sequence[int],
    recon_size: Sequence[int],
    num_coils: int,
    acquisition: str | None = None,
    test_file: bool = False,
    acceleration: int = 4,
    padding: tuple[int, int] | None = None,
    seed: int = 0,
    sens_path: str | os.PathLike | None = None,
) -> Path:
    """Write one volume in fastMRI's layout (atomically) and return its path.

    Args:
        path: output file; name it as fastMRI does (``file1000001.h5``,
            ``file_brain_AXT2_200_6002551.h5``), the name is not checked.
        challenge: ``singlecoil`` or ``multicoil``.
        anatomy: ``knee`` or ``brain`` (field of view and default acquisition).
        num_slices: slices ``S``.
        kspace_shape: ``(H, W)``; ``W`` smaller than the recon width gives a FLAIR-like narrow image.
        recon_size: ``(h, w)`` of the header's reconSpace and of the target.
        num_coils: coils ``C`` of multicoil data (ignored for single-coil).
        acquisition: the ``acquisition`` attribute; default ``CORPD_FBK`` (knee) / ``AXT2`` (brain).
        test_file: write a test file: k-space undersampled by a stored ``mask`` ``(W,)`` (random
            columns plus a fully sampled centre), attributes ``acceleration`` and
            ``num_low_frequency``, no reconstruction and no ``max`` / ``norm``.
        acceleration: of a test file's mask, 4 or 8.
        padding: ``(padding_left, padding_right)``: columns outside were never acquired and hold zeros;
            the header's centre and maximum encode it. None: every column acquired.
        seed: the object, coil maps and mask.
        sens_path: also write the true ``sens_maps`` ``(S, C, h, w)`` here (multicoil only), brought
            to the recon size like the images; for a test file on the stored grid ``(S, C, H, W)``.
    """
    if challenge not in RECON_KEYS:
        raise ValueError(f"unknown challenge {challenge!r}; expected one of {list(RECON_KEYS)}")
    if anatomy not in DEFAULT_ACQUISITION:
        raise ValueError(f"unknown anatomy {anatomy!r}; expected one of {list(DEFAULT_ACQUISITION)}")
    if sens_path is not None and challenge != "multicoil":
        raise ValueError("sens_path is only meaningful for multicoil data")
    big_h, big_w = (int(n) for n in kspace_shape)
    h, w = (int(n) for n in recon_size)
    left, right = (0, big_w) if padding is None else (int(padding[0]), int(padding[1]))
    if not 0 <= left < big_w // 2 < right <= big_w:
        raise ValueError(f"padding {padding} must satisfy 0 <= left < W // 2 < right <= W = {big_w}")
    coils = int(num_coils) if challenge == "multicoil" else 1

    rng = np.random.default_rng(seed)
    objects = np.stack([_smooth_object(rng, (big_h, big_w), (h, w)) for _ in range(num_slices)])
    maps = (
        _smooth_maps(rng, coils, (big_h, big_w)) if challenge == "multicoil" else np.ones((1, big_h, big_w))
    )
    kspace = fft2c_np(maps[None] * objects[:, None])
    kspace[..., :left] = 0
    kspace[..., right:] = 0

    mask = None
    if test_file:
        mask = _test_mask(rng, big_w, int(acceleration), left, right)
        kspace = kspace * mask
    else:
        coil_images = center_crop_or_pad(ifft2c_np(kspace), (h, w))
        target = np.sqrt((np.abs(coil_images) ** 2).sum(axis=1)).astype(np.float32)
    if challenge == "singlecoil":
        kspace = kspace[:, 0]

    header = ismrmrd_header(
        (big_h, big_w, 1),
        (h, w, 1),
        center=big_w // 2 - left,
        maximum=right - left - 1,
        fov_mm=_FOV_MM[anatomy],
    )
    final = Path(path)
    with atomic_path(final) as tmp, h5py.File(tmp, "w") as hf:
        hf.create_dataset("ismrmrd_header", data=header, dtype=h5py.string_dtype("utf-8"))
        hf.create_dataset("kspace", data=kspace.astype(np.complex64))
        hf.attrs["acquisition"] = acquisition or DEFAULT_ACQUISITION[anatomy]
        hf.attrs["patient_id"] = hashlib.sha256(f"test-patient/{seed}/{final.name}".encode()).hexdigest()
        if mask is None:
            hf.create_dataset(RECON_KEYS[challenge], data=target)
            hf.attrs["max"] = np.float64(target.max())
            hf.attrs["norm"] = np.float64(np.linalg.norm(target.astype(np.float64)))
        else:
            hf.create_dataset(FILE_MASK_KEY, data=mask)
            hf.attrs["acceleration"] = np.int64(acceleration)
            hf.attrs["num_low_frequency"] = np.int64(_num_low_frequency(big_w, int(acceleration)))
    if sens_path is not None:
        maps_out = maps if test_file else center_crop_or_pad(maps, (h, w))
        with atomic_path(sens_path) as tmp, h5py.File(tmp, "w") as hf:
            stacked = np.broadcast_to(maps_out, (num_slices,) + maps_out.shape)
            hf.create_dataset(SENS_MAPS_KEY, data=stacked.astype(np.complex64))
    return final


def write_layout(
    directory: str | os.PathLike,
    kind: str,
    *,
    seed: int = 0,
    sens_dir: str | os.PathLike | None = None,
    **overrides,
) -> Path:
    """Write the preset ``kind`` of :data:`LAYOUTS` as ``directory / fname``.

    ``sens_dir``: also write ``sens_dir / fname`` with the true maps (multicoil presets; ignored for
    single-coil ones, so one call fits every kind). Keyword ``overrides`` replace preset values
    (``fname`` included).
    """
    if kind not in LAYOUTS:
        raise ValueError(f"unknown layout {kind!r}; expected one of {sorted(LAYOUTS)}")
    spec = {**LAYOUTS[kind], **overrides}
    fname = spec.pop("fname")
    sens_path = None if sens_dir is None or spec["challenge"] != "multicoil" else Path(sens_dir) / fname
    return write_fastmri_volume(Path(directory) / fname, seed=seed, sens_path=sens_path, **spec)


def fill_padding_columns(path: str | os.PathLike, value: complex = 1e3 + 1e3j) -> tuple[int, int]:
    """Overwrite a file's k-space padding columns (per its header) with ``value``, as a corrupt file
    would have them; returns the ``(padding_left, padding_right)`` used."""
    with h5py.File(path, "r+") as hf:
        header = hf["ismrmrd_header"][()]
        encoding = parse_ismrmrd_header(header.encode() if isinstance(header, str) else header)
        left, right = encoding.padding_left, encoding.padding_right
        kspace = hf["kspace"][()]
        if left <= 0 and right >= kspace.shape[-1]:
            raise ValueError(f"{path}: has no padding columns to fill")
        kspace[..., :left] = value
        kspace[..., right:] = value
        hf["kspace"][...] = kspace
    return left, right


def _smooth_object(rng: np.random.Generator, grid: tuple[int, int], frame: tuple[int, int]) -> np.ndarray:
    """A smooth complex object ``(H, W)``: low-frequency random texture under a soft ellipse that
    fills most of the recon frame (clipped to the grid)."""
    big_h, big_w = grid
    coefficients = np.zeros(grid, np.complex128)
    cy, cx = big_h // 2, big_w // 2
    coefficients[cy - 2 : cy + 3, cx - 2 : cx + 3] = rng.standard_normal((5, 5)) + 1j * rng.standard_normal(
        (5, 5)
    )
    texture = ifft2c_np(coefficients)
    texture = 1.0 + 0.5 * texture / np.abs(texture).max()
    radius_y, radius_x = 0.4 * min(frame[0], big_h), 0.4 * min(frame[1], big_w)
    y = (np.arange(big_h) - cy)[:, None] / radius_y
    x = (np.arange(big_w) - cx)[None, :] / radius_x
    support = 1.0 / (1.0 + np.exp(8.0 * (np.sqrt(y**2 + x**2) - 1.0)))
    return support * texture * np.exp(1j * rng.uniform(-np.pi, np.pi))


def _smooth_maps(rng: np.random.Generator, coils: int, grid: tuple[int, int]) -> np.ndarray:
    """Smooth complex coil maps ``(C, H, W)`` with ``sum_c |S_c|^2 = 1``: one bump per coil around
    the object plus a low-order random phase and ripple."""
    big_h, big_w = grid
    y = np.linspace(-1.0, 1.0, big_h)[:, None]
    x = np.linspace(-1.0, 1.0, big_w)[None, :]
    maps = []
    for coil in range(coils):
        angle = 2 * np.pi * coil / coils + rng.uniform(-0.3, 0.3)
        bump = np.exp(-((y - np.sin(angle)) ** 2 + (x - np.cos(angle)) ** 2))
        ripple = 1.0 + 0.2 * (rng.standard_normal() * y + rng.standard_normal() * x)
        phase = np.exp(
            1j * (rng.uniform(-np.pi, np.pi) + rng.standard_normal() * x + rng.standard_normal() * y)
        )
        maps.append(bump * ripple * phase)
    maps = np.stack(maps)
    return maps / np.sqrt((np.abs(maps) ** 2).sum(axis=0, keepdims=True))


def _num_low_frequency(width: int, acceleration: int) -> int:
    if acceleration not in _CENTER_FRACTION:
        raise ValueError(f"acceleration must be one of {sorted(_CENTER_FRACTION)}, got {acceleration}")
    return max(1, round(width * _CENTER_FRACTION[acceleration]))


def _test_mask(rng: np.random.Generator, width: int, acceleration: int, left: int, right: int) -> np.ndarray:
    """fastMRI-style random column mask ``(W,)``: a fully sampled centre of ``num_low_frequency``
    columns, the others kept with probability ``(W / acc - num_low) / (W - num_low)``, none in the
    padding."""
    num_low = _num_low_frequency(width, acceleration)
    probability = (width / acceleration - num_low) / (width - num_low)
    mask = rng.uniform(size=width) < probability
    start = (width - num_low + 1) // 2
    mask[start : start + num_low] = True
    mask[:left] = False
    mask[right:] = False
    return mask
