"""Coil sensitivity maps from the fully sampled k-space centre (ESPIRiT), and map files.

Real multicoil data ship no sensitivity maps; SENSE (``A = M F S``) needs them. ESPIRiT (Uecker et
al., MRM 2014) finds them from the auto-calibration (ACS) block alone: k-space patches of all coils
span a low-dimensional subspace, whose projector, moved to the image domain, becomes one small
``C x C`` matrix per pixel with the sensitivities as its eigenvector of eigenvalue (close to) 1.

Map files hold ``sens_maps`` complex64 ``(S, C, h, w)`` and, when they cover only some slices of a
volume, ``slice_indices`` int32 ``(S,)`` naming the volume slice of each row. Files without
``slice_indices`` (the synthetic data's true maps) have one row per slice of the volume.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import h5py
import numpy as np
import torch

from smug.data.fastmri_io import (
    SENS_MAPS_KEY,
    FastMRIFormatError,
    check_finite,
    load_slice,
    open_hdf5,
    open_volume,
)
from smug.utils import atomic_path
from smug.mri import center_crop_or_pad

SLICE_INDICES_KEY = "slice_indices"
ESTIMATOR = "espirit"
# Elements of one block of per-pixel C x C matrices; bounds the memory of the eigen-decompositions.
_BLOCK_ELEMENTS = 1 << 22


def calibration_region(shape: Sequence[int], num_acs: int) -> tuple[slice, slice]:
    """Rows and columns of the calibration block of a ``(H, W)`` k-space grid.

    The block is ``min(H, num_acs)`` rows by ``num_acs`` columns centred on the DC sample, placed as
    :mod:`smug.mri.masks` places its fully sampled centre: the columns start at ``(W - num_acs + 1) // 2``
    (the rows likewise). A square block is ESPIRiT's usual choice (BART's ``ecalib`` uses 24 x 24):
    the readout is fully sampled, but more rows add work without changing smooth maps.
    """
    height, width = int(shape[0]), int(shape[1])
    num_rows = min(height, num_acs)
    top = (height - num_rows + 1) // 2
    left = (width - num_acs + 1) // 2
    return slice(top, top + num_rows), slice(left, left + num_acs)


def espirit_maps(
    kspace: torch.Tensor,
    num_acs: int,
    *,
    kernel_size: int = 6,
    threshold: float = 0.02,
    crop: float = 0.95,
    out_shape: Sequence[int] | None = None,
) -> torch.Tensor:
    """ESPIRiT sensitivity maps of one slice, from its calibration block.

    Steps: the calibration matrix has one row per ``kernel_size x kernel_size`` window of the
    calibration block (see :func:`calibration_region`), holding that window of every coil; its right
    singular vectors with singular value ``>= threshold * max`` span the signal subspace. Their
    projector, as a k-space convolution, is moved to the image domain, where it is a ``C x C``
    matrix per pixel; the eigenvector of the largest eigenvalue is the map at that pixel, zeroed
    where that eigenvalue is below ``crop`` (no consistent signal: background).

    The per-pixel matrices are evaluated only on the centred ``out_shape`` crop of the ``(H, W)``
    grid (the same pixels as ``smug.mri.transforms.center_crop`` keeps), so the maps are those of the
    full grid, cropped, at a fraction of the cost when the recon region is smaller.

    Maps have unit norm, ``sum_c |S_c|^2 = 1``, where not zeroed. An eigenvector's phase is
    arbitrary per pixel; it is fixed relative to the dominant virtual coil of the calibration data
    (``w``, the principal eigenvector of the calibration block's ``C x C`` coil covariance):
    ``sum_c conj(w_c) S_c`` is real and non-negative at every pixel. Unlike the phase of coil 0,
    which is noise wherever coil 0 sees little, this reference is smooth over the whole object, and
    so is the phase of SENSE-combined images.

    Args:
        kspace: complex ``(C, H, W)`` k-space (``H`` readout rows, ``W`` phase-encode columns),
            fully sampled at least in the calibration block, DC at ``(H // 2, W // 2)``.
        num_acs: columns of the calibration block (the fully sampled centre).
        kernel_size: side of the k-space kernel window, at most ``min(H, num_acs)``.
        threshold: singular values kept, relative to the largest, in ``(0, 1]``.
        crop: eigenvalue below which a pixel's maps are zeroed, in ``[0, 1)``.
        out_shape: ``(h, w)`` centre crop to compute, default ``(H, W)``.

    Returns:
        complex64 ``(C, h, w)`` on ``kspace``'s device.
    """
    out_h, out_w = _check_espirit_arguments(kspace, num_acs, kernel_size, threshold, crop, out_shape)
    num_coils, height, width = kspace.shape
    rows, cols = calibration_region((height, width), int(num_acs))
    # The calibration problem is small; double precision costs nothing there and keeps the
    # thresholded subspace stable.
    calib = kspace[:, rows, cols].to(torch.complex128)
    _check_calibration(calib, cols.start)
    kernels = _signal_kernels(calib, int(kernel_size), threshold)
    coefficients = _kernel_autocorrelation(kernels).to(torch.complex64)
    reference = _dominant_virtual_coil(calib).to(torch.complex64)

    top, left = (height - out_h) // 2, (width - out_w) // 2
    offsets = torch.arange(-(kernel_size - 1), kernel_size, device=kspace.device, dtype=torch.float64)
    rows_out = torch.arange(top, top + out_h, device=kspace.device) - height // 2
    cols_out = torch.arange(left, left + out_w, device=kspace.device) - width // 2
    phase_rows = _fourier_matrix(rows_out, offsets, height).to(torch.complex64)
    phase_cols = _fourier_matrix(cols_out, offsets, width).to(torch.complex64)
    # The kernels are the same at every window position; averaging the projection over the
    # kernel_size^2 windows that cover each sample makes consistent data an eigenvector of value 1.
    coefficients = coefficients / kernel_size**2

    maps = torch.empty((num_coils, out_h, out_w), dtype=torch.complex64, device=kspace.device)
    block_rows = max(1, _BLOCK_ELEMENTS // (out_w * num_coils * num_coils))
    for start in range(0, out_h, block_rows):
        stop = min(out_h, start + block_rows)
        block = _top_eigenvectors(coefficients, phase_rows[start:stop], phase_cols, reference, crop)
        maps[:, start:stop] = block.permute(2, 0, 1)
    return maps


def _check_espirit_arguments(kspace, num_acs, kernel_size, threshold, crop, out_shape) -> tuple[int, int]:
    """:func:`espirit_maps`' arguments checked, each error naming the argument; returns ``(h, w)``."""
    if not isinstance(kspace, torch.Tensor) or not torch.is_complex(kspace) or kspace.ndim != 3:
        raise ValueError(f"kspace must be a complex tensor (coils, H, W), got {_describe(kspace)}")
    num_coils, height, width = kspace.shape
    if min(kspace.shape) < 1:
        raise ValueError(f"kspace is empty, shape {tuple(kspace.shape)}")
    if not _is_int(num_acs) or not 1 <= num_acs <= width:
        raise ValueError(f"num_acs must be an integer in [1, W={width}], got {num_acs!r}")
    calib_rows = min(height, int(num_acs))
    if not _is_int(kernel_size) or not 1 <= kernel_size <= min(calib_rows, num_acs):
        raise ValueError(
            f"kernel_size must be an integer in [1, {min(calib_rows, num_acs)}] "
            f"(the {calib_rows} x {num_acs} calibration block), got {kernel_size!r}"
        )
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1], got {threshold!r}")
    if not 0 <= crop < 1:
        raise ValueError(f"crop must be in [0, 1), got {crop!r}")
    out_h, out_w = (height, width) if out_shape is None else (int(out_shape[0]), int(out_shape[1]))
    if not (0 < out_h <= height and 0 < out_w <= width):
        raise ValueError(
            f"out_shape {(out_h, out_w)} must be positive and at most the k-space grid {(height, width)}"
        )
    return out_h, out_w


def _top_eigenvectors(
    coefficients: torch.Tensor,
    phase_rows: torch.Tensor,
    phase_cols: torch.Tensor,
    reference: torch.Tensor,
    crop: float,
) -> torch.Tensor:
    """The maps of a block of rows ``(y, x, C)``: each pixel's principal eigenvector of its ``C x C``
    matrix, its phase fixed against ``reference``, zeroed where the eigenvalue is below ``crop``."""
    # G[y, x] = sum over offsets (dy, dx) of coefficients[:, :, dy, dx] e^{2 pi i (dy y / H + dx x / W)}
    partial = torch.einsum("ceab,ya->yceb", coefficients, phase_rows)
    matrices = torch.einsum("yceb,xb->yxce", partial, phase_cols)
    eigenvalues, eigenvectors = torch.linalg.eigh(matrices)
    top_vectors = eigenvectors[..., -1]  # (y, x, C), unit norm
    projection = (reference.conj() * top_vectors).sum(-1, keepdim=True)
    rotation = torch.where(
        projection.abs() > 0,
        projection.conj() / projection.abs().clamp_min(1e-30),
        torch.ones_like(projection),
    )
    block = top_vectors * rotation
    block = torch.where(eigenvalues[..., -1:] >= crop, block, torch.zeros_like(block))
    return block


def estimate_volume_maps(
    volume_path: str | os.PathLike,
    slice_indices: Sequence[int],
    recon_size: Sequence[int],
    num_acs: int,
    *,
    device: torch.device | str = "cpu",
    **espirit_kw: Any,
) -> np.ndarray:
    """ESPIRiT maps of some slices of a multicoil fastMRI volume, cropped to the recon size.

    Args:
        volume_path: fastMRI HDF5 volume with multicoil ``kspace`` ``(S, C, H, W)``.
        slice_indices: slices to estimate, in the order of the output rows.
        recon_size: ``(h, w)`` crop, as :func:`smug.data.datasets.preprocess_slice` crops the coil images.
        num_acs: calibration columns (see :func:`espirit_maps`).
        device: where the eigen-decompositions run.
        **espirit_kw: ``kernel_size``, ``threshold``, ``crop`` of :func:`espirit_maps`.

    Returns:
        complex64 ``(len(slice_indices), C, h, w)``.

    Raises:
        FastMRIFormatError: unreadable or single-coil volume, or a slice out of range.
    """
    unknown = set(espirit_kw) - {"kernel_size", "threshold", "crop"}
    if unknown:
        raise ValueError(f"estimate_volume_maps: unknown ESPIRiT options {sorted(unknown)}")
    out_shape = (int(recon_size[0]), int(recon_size[1]))
    with open_volume(volume_path) as hf:
        if hf["kspace"].ndim != 4:
            raise FastMRIFormatError(
                volume_path, "single-coil volume; sensitivity maps are for multicoil data"
            )
        maps = []
        for slice_idx in slice_indices:
            kspace, _ = load_slice(hf, slice_idx)
            # A volume narrower than the recon size (fastMRI's FLAIR case) is zero-padded by the
            # slice dataset; its maps are estimated on the grid it has and padded the same way.
            inside = (min(out_shape[0], kspace.shape[-2]), min(out_shape[1], kspace.shape[-1]))
            try:
                estimate = espirit_maps(
                    torch.from_numpy(kspace).to(device), num_acs, out_shape=inside, **espirit_kw
                )
            except ValueError as exc:
                raise FastMRIFormatError(volume_path, f"slice {slice_idx}: {exc}") from None
            maps.append(center_crop_or_pad(estimate.cpu().numpy(), out_shape))
    if not maps:
        raise ValueError(f"{volume_path}: no slices requested")
    return np.stack(maps)


def write_sens_maps(
    path: str | os.PathLike,
    maps: np.ndarray | torch.Tensor,
    slice_indices: Sequence[int],
    attrs: Mapping[str, Any],
) -> None:
    """Write a map file atomically: ``sens_maps`` complex64 ``(S, C, h, w)``, ``slice_indices``
    int32 ``(S,)`` and ``attrs`` (the estimator and its settings, the source volume) as HDF5
    attributes.

    Raises:
        ValueError: maps not complex 4-D, slice indices not ``S`` distinct non-negative integers, or
            an attribute HDF5 cannot store.
    """
    if isinstance(maps, torch.Tensor):
        maps = maps.detach().cpu().numpy()
    maps = np.asarray(maps)
    if maps.dtype.kind != "c" or maps.ndim != 4:
        raise ValueError(
            f"{path}: maps must be complex (slices, coils, h, w), got dtype {maps.dtype}, shape {maps.shape}"
        )
    indices = list(slice_indices)
    if not all(_is_int(i) and i >= 0 for i in indices) or len(set(indices)) != len(indices):
        raise ValueError(f"{path}: slice_indices must be distinct non-negative integers, got {indices}")
    if len(indices) != maps.shape[0]:
        raise ValueError(f"{path}: {len(indices)} slice_indices for {maps.shape[0]} slices of maps")
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as hf:
        hf.create_dataset(SENS_MAPS_KEY, data=maps.astype(np.complex64), track_times=False)
        hf.create_dataset(SLICE_INDICES_KEY, data=np.asarray(indices, dtype=np.int32), track_times=False)
        for key, value in attrs.items():
            try:
                hf.attrs[key] = value
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{path}: cannot store attribute {key!r}={value!r} ({exc})") from None


def read_sens_maps(path: str | os.PathLike, slice_idx: int) -> np.ndarray:
    """Read the sensitivity maps of volume slice ``slice_idx``, complex64 ``(C, h, w)``.

    With ``slice_indices`` in the file the slice is looked up there; without, row ``slice_idx``
    is read (files with one row per volume slice).

    Raises:
        FastMRIFormatError: missing or unreadable file, no ``sens_maps`` dataset, not complex
            ``(S, C, h, w)``, malformed ``slice_indices``, or no maps for ``slice_idx``.
    """
    if isinstance(slice_idx, (bool, np.bool_)) or not isinstance(slice_idx, (int, np.integer)):
        raise FastMRIFormatError(path, f"slice index must be an integer, got {slice_idx!r}")
    with open_hdf5(path) as hf:
        maps = hf.get(SENS_MAPS_KEY)
        if maps is None:
            raise FastMRIFormatError(path, f"no {SENS_MAPS_KEY!r} dataset (keys: {sorted(hf.keys())})")
        if not isinstance(maps, h5py.Dataset) or maps.dtype.kind != "c" or maps.ndim != 4:
            raise FastMRIFormatError(
                path, f"{SENS_MAPS_KEY!r} must be complex (slices, coils, h, w), got {_describe_h5(maps)}"
            )
        indices = _stored_slice_indices(hf, Path(path), maps.shape[0])
        if indices is None:
            if not 0 <= slice_idx < maps.shape[0]:
                raise FastMRIFormatError(path, f"slice {slice_idx} out of range [0, {maps.shape[0]})")
            row = int(slice_idx)
        else:
            rows = np.flatnonzero(indices == slice_idx)
            if rows.size == 0:
                raise FastMRIFormatError(
                    path,
                    f"no maps for slice {slice_idx}; the file has slices {indices.tolist()}: "
                    "re-estimate the maps for this slice selection (scripts/estimate_sens_maps.py)",
                )
            row = int(rows[0])
        try:
            values = np.asarray(maps[row], dtype=np.complex64)
        except OSError as exc:
            raise FastMRIFormatError(path, f"cannot read {SENS_MAPS_KEY} row {row} ({exc})") from None
    check_finite(path, SENS_MAPS_KEY, int(slice_idx), values)
    return values


def maps_file_matches(
    path: str | os.PathLike, slice_indices: Sequence[int], attrs: Mapping[str, Any]
) -> bool:
    """Whether ``path`` is a readable map file for exactly ``slice_indices`` written with ``attrs``
    (every given attribute equal), so that estimating again would reproduce it."""
    try:
        with open_hdf5(path) as hf:
            maps = hf.get(SENS_MAPS_KEY)
            if not isinstance(maps, h5py.Dataset) or maps.ndim != 4:
                return False
            stored = _stored_slice_indices(hf, Path(path), maps.shape[0])
            if stored is None or stored.tolist() != [int(i) for i in slice_indices]:
                return False
            for key, value in attrs.items():
                if key not in hf.attrs or not _same_attribute(hf.attrs[key], value):
                    return False
    except (FastMRIFormatError, OSError):
        return False
    return True


def _signal_kernels(calib: torch.Tensor, kernel_size: int, threshold: float) -> torch.Tensor:
    """Kernels ``(n, C, k, k)`` spanning the patches of ``calib`` ``(C, r, c)``.

    The calibration matrix rows are the (unconjugated) windows; the rows of ``Vh`` of its SVD are
    the conjugated right singular vectors, which span exactly the windows themselves.
    """
    num_coils = calib.shape[0]
    windows = calib.unfold(1, kernel_size, 1).unfold(2, kernel_size, 1)  # (C, r', c', k, k)
    matrix = windows.permute(1, 2, 0, 3, 4).reshape(-1, num_coils * kernel_size**2)
    _, singular_values, vh = torch.linalg.svd(matrix, full_matrices=False)
    keep = singular_values >= threshold * singular_values[0]
    return vh[keep].reshape(-1, num_coils, kernel_size, kernel_size)


def _kernel_autocorrelation(kernels: torch.Tensor) -> torch.Tensor:
    """``M[c, e, dy, dx] = sum_j sum_d kernels[j, c, d] conj(kernels[j, e, d - (dy, dx)])``, offsets
    ``-(k-1)..k-1`` stored at ``0..2k-2``: the Fourier coefficients of the per-pixel matrices.

    The products of the kernels' length-``2k-1`` DFTs sample that trigonometric polynomial at
    ``2k-1`` points per axis, enough to recover its coefficients exactly.
    """
    kernel_size = kernels.shape[-1]
    length = 2 * kernel_size - 1
    spectra = torch.fft.fft2(kernels, s=(length, length))
    products = torch.einsum("jcuv,jeuv->ceuv", spectra, spectra.conj())
    return torch.fft.fftshift(torch.fft.ifft2(products), dim=(-2, -1))


def _fourier_matrix(positions: torch.Tensor, offsets: torch.Tensor, size: int) -> torch.Tensor:
    """``exp(2 pi i position * offset / size)``, ``(len(positions), len(offsets))`` complex128."""
    angles = 2 * torch.pi * positions.to(torch.float64)[:, None] * offsets[None, :] / size
    return torch.polar(torch.ones_like(angles), angles)


def _dominant_virtual_coil(calib: torch.Tensor) -> torch.Tensor:
    """Unit ``(C,)`` coil weights of the calibration data's principal component."""
    flat = calib.reshape(calib.shape[0], -1)
    _, vectors = torch.linalg.eigh(flat @ flat.conj().T)
    return vectors[:, -1]


def _check_calibration(calib: torch.Tensor, first_column: int) -> None:
    column_energy = (calib.abs() ** 2).sum(dim=(0, 1))
    if not torch.isfinite(column_energy).all():
        raise ValueError("calibration block contains NaN or infinite k-space values")
    empty = torch.nonzero(column_energy == 0).flatten()
    if empty.numel():
        columns = (empty + first_column).tolist()
        raise ValueError(
            f"calibration block has all-zero k-space columns {columns}: the centre is not fully sampled "
            "there (undersampled k-space, or num_acs wider than the fully sampled centre)"
        )


def _stored_slice_indices(hf: h5py.File, path: Path, num_rows: int) -> np.ndarray | None:
    if SLICE_INDICES_KEY not in hf:
        return None
    dataset = hf[SLICE_INDICES_KEY]
    if (
        not isinstance(dataset, h5py.Dataset)
        or dataset.dtype.kind not in "iu"
        or dataset.shape != (num_rows,)
    ):
        raise FastMRIFormatError(
            path,
            f"{SLICE_INDICES_KEY!r} must be integer ({num_rows},) to match {SENS_MAPS_KEY}, "
            f"got {_describe_h5(dataset)}",
        )
    return np.asarray(dataset[()], dtype=np.int64)


def _same_attribute(stored: Any, value: Any) -> bool:
    if isinstance(stored, bytes):
        stored = stored.decode("utf-8", errors="replace")
    stored_array, value_array = np.asarray(stored), np.asarray(value)
    if stored_array.shape != value_array.shape:
        return False
    return bool(np.all(stored_array == value_array))


def _describe(x: Any) -> str:
    if isinstance(x, torch.Tensor):
        return f"dtype {x.dtype}, shape {tuple(x.shape)}"
    return type(x).__name__


def _describe_h5(obj: Any) -> str:
    if isinstance(obj, h5py.Dataset):
        return f"dtype {obj.dtype}, shape {obj.shape}"
    return "a group"


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
