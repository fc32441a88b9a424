"""Reading fastMRI HDF5 volumes (the real data set and the embedded synthetic one alike).

Layout (fastMRI's): ``kspace`` complex64 ``(slices, H, W)`` single-coil or ``(slices, coils, H, W)``
multicoil, with ``H`` the readout (x) and ``W`` the phase-encode (y) axis; the target
``reconstruction_esc`` (single-coil) or ``reconstruction_rss`` (multicoil), float ``(slices, h, w)``,
absent from test files; ``ismrmrd_header`` the ISMRMRD XML; attributes such as ``acquisition``,
``max``, ``norm`` and ``patient_id``. Test and challenge files hold k-space that is already
undersampled, a ``mask`` ``(W,)`` of the sampled columns and the attributes ``acceleration`` and
``num_low_frequency``. Sensitivity-map files are read and written by :mod:`smug.data.sens_maps`.

Real files come as single-coil knee (``(S, 640, 368)`` k-space, ``reconstruction_esc``
``(S, 320, 320)``, acquisitions ``CORPD_FBK`` / ``CORPDFS_FBK``, names like ``file1000001.h5``) and
multicoil knee and brain (``(S, C, H, W)``, ``reconstruction_rss``; brain acquisitions ``AXT1``,
``AXT1PRE``, ``AXT1POST``, ``AXT2``, ``AXFLAIR``, names like ``file_brain_AXT2_200_6002551.h5``).

Every problem with a file raises :class:`FastMRIFormatError` naming the file, so a bad volume
among thousands is found from the message alone. Every HDF5 file the pipeline reads is opened by
:func:`smug.data.hdf5_safety.open_hdf5`, which refuses a file whose data lie in other files (external links, external raw
storage, virtual datasets): a crafted volume cannot make a job read, or publish, local files.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from smug.data.hdf5_safety import FastMRIFormatError, open_hdf5
from smug.data.ismrmrd import EncodingInfo, parse_ismrmrd_header

RECON_KEYS = {"singlecoil": "reconstruction_esc", "multicoil": "reconstruction_rss"}
# Dataset of a sensitivity-map file (read and written by smug.data.sens_maps, also by smug.data.synthetic).
SENS_MAPS_KEY = "sens_maps"
FILE_MASK_KEY = "mask"
# Acquisition prefixes and file-name patterns of fastMRI's two anatomies.
_ANATOMY_ACQUISITION_PREFIXES = (("knee", "CORPD"), ("brain", "AX"))
_ANATOMY_NAME_PATTERNS = (("brain", re.compile(r"file_brain_.*")), ("knee", re.compile(r"file1\d*(\..*)?")))


@dataclass(frozen=True)
class VolumeInfo:
    """What :func:`inspect_volume` learned about a volume without reading its arrays.

    ``recon_key`` is the challenge's target dataset (``reconstruction_esc`` / ``reconstruction_rss``)
    or ``None`` when the file has none (test files); ``target_shape`` is its ``(h, w)`` or ``None``.
    ``num_coils`` is 1 for single-coil data. ``file_mask_shape`` is the shape of a test file's
    ``mask`` (always ``(W,)``, checked) or ``None``; read the mask with :func:`read_file_mask`.
    ``acceleration`` and ``num_low_frequency`` are the test-file attributes of the same names, or
    ``None``.
    """

    path: Path
    challenge: str
    num_slices: int
    num_coils: int
    kspace_shape: tuple[int, ...]
    recon_key: str | None
    target_shape: tuple[int, int] | None
    encoding: EncodingInfo
    attrs: dict[str, Any]
    file_mask_shape: tuple[int, ...] | None = None
    acceleration: float | None = None
    num_low_frequency: int | None = None

    @property
    def has_target(self) -> bool:
        """False for test and challenge files, which carry no reconstruction."""
        return self.recon_key is not None

    @property
    def anatomy(self) -> str | None:
        """``"knee"``, ``"brain"`` or ``None``; see :func:`anatomy_of`."""
        return anatomy_of(self.path.name, self.attrs.get("acquisition"))


@dataclass(frozen=True)
class VolumeLimits:
    """Largest volume the pipeline accepts (``data.volume_limits``), checked from the declared shapes
    before anything is read: a crafted or corrupt header cannot make a job allocate terabytes.
    fastMRI's largest volumes are about 768 x 396 k-space with at most a few dozen coils.

    ``max_height`` and ``max_width`` bound both the k-space grid and the header's ``reconSpace``,
    the image size every slice is cropped or zero-padded to (fastMRI's: 320 x 320).
    """

    max_slices: int
    max_coils: int
    max_height: int
    max_width: int

    def check(self, info: VolumeInfo) -> None:
        """Raise :class:`FastMRIFormatError` naming the file if ``info`` exceeds a limit."""
        declared = {
            "slices": (info.num_slices, self.max_slices),
            "coils": (info.num_coils, self.max_coils),
            "k-space height": (info.kspace_shape[-2], self.max_height),
            "k-space width": (info.kspace_shape[-1], self.max_width),
        }
        over = [f"{name} {value} > {limit}" for name, (value, limit) in declared.items() if value > limit]
        if over:
            raise FastMRIFormatError(
                info.path,
                f"declares 'kspace' {info.kspace_shape}, beyond data.volume_limits ({', '.join(over)}); "
                "raise the limits only for a real data set this large",
            )
        height, width = info.encoding.recon_size[:2]
        declared = {"recon height": (height, self.max_height), "recon width": (width, self.max_width)}
        over = [f"{name} {value} > {limit}" for name, (value, limit) in declared.items() if value > limit]
        if over:
            raise FastMRIFormatError(
                info.path,
                f"header declares reconSpace {height} x {width}, beyond data.volume_limits "
                f"({', '.join(over)}); raise the limits only for a real data set this large",
            )


def check_recon_fits(info: VolumeInfo) -> None:
    """Refuse a header whose ``reconSpace`` is not a positive size, or so large that one slice of
    coil images brought to it would not fit in this machine's memory.

    Every slice is cropped or zero-padded to the recon size before anything else happens to it, so
    a header declaring 10^6 x 10^6 would otherwise end in an allocation error naming no file. The
    configured ``data.volume_limits`` are checked when a split is made (:meth:`VolumeLimits.check`);
    this check guards every slice read, including files that never were in a split.

    Raises:
        FastMRIFormatError: naming the file and the declared size.
    """
    height, width = info.encoding.recon_size[:2]
    if height < 1 or width < 1:
        raise FastMRIFormatError(
            info.path, f"header declares reconSpace {height} x {width}, not a positive size"
        )
    slice_bytes = float(info.num_coils) * height * width * np.dtype(np.complex64).itemsize
    if slice_bytes > _memory_bytes():
        raise FastMRIFormatError(
            info.path,
            f"header declares reconSpace {height} x {width}: one slice of {info.num_coils} coil image(s) at "
            f"that size needs {slice_bytes / 2**30:.3g} GiB, this machine has "
            f"{_memory_bytes() / 2**30:.3g} GiB (a damaged or crafted header)",
        )


def anatomy_of(fname: str, acquisition: str | None = None) -> str | None:
    """The anatomy of a fastMRI volume from its ``acquisition`` attribute, else its file name.

    ``CORPD*`` acquisitions (``CORPD_FBK``, ``CORPDFS_FBK``) are knee, ``AX*`` (``AXT1``, ``AXT2``,
    ``AXFLAIR``, ...) brain; without a known acquisition, ``file_brain_*`` names are brain and
    ``file1*`` names knee. ``None`` when neither tells.
    """
    if isinstance(acquisition, str):
        for anatomy, prefix in _ANATOMY_ACQUISITION_PREFIXES:
            if acquisition.upper().startswith(prefix):
                return anatomy
    for anatomy, pattern in _ANATOMY_NAME_PATTERNS:
        if pattern.fullmatch(fname):
            return anatomy
    return None


def inspect_volume(path: str | os.PathLike) -> VolumeInfo:
    """Validate a fastMRI volume and describe it, reading only metadata.

    Raises:
        FastMRIFormatError: the file is missing, not (or a truncated) HDF5 file, reads data from
            other files (:func:`check_self_contained`), lacks ``kspace`` or ``ismrmrd_header``, has
            k-space that is not complex ``(S, H, W)`` / ``(S, C, H, W)``, a target of the wrong rank
            or slice count, a ``mask`` that is not a plausible ``(W,)`` column mask
            (:func:`check_file_mask`), or an ``acceleration`` / ``num_low_frequency`` attribute that
            is not a positive number.
    """
    with open_hdf5(path) as hf:
        return _describe(hf, Path(path))


def open_volume(path: str | os.PathLike) -> h5py.File:
    """Open a volume read-only after validating it (see :func:`inspect_volume` and
    :func:`check_recon_fits`).

    For callers that keep handles open across slices (one per data-loader worker); the caller closes
    the file. Read slices from it with :func:`load_slice`.
    """
    hf = open_hdf5(path)
    try:
        check_recon_fits(_describe(hf, Path(path)))
    except BaseException:
        hf.close()
        raise
    return hf


def read_slice(path: str | os.PathLike, slice_idx: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Read one slice of a volume; the file is open only during the call.

    Returns:
        k-space complex64 ``(C, H, W)`` (``C = 1`` for single-coil) and the target float32 ``(h, w)``,
        or ``None`` when the file has no target.
    """
    with open_volume(path) as hf:
        return load_slice(hf, slice_idx)


def load_slice(hf: h5py.File, slice_idx: int) -> tuple[np.ndarray, np.ndarray | None]:
    """:func:`read_slice` on a handle from :func:`open_volume`."""
    path = Path(hf.filename)
    kspace_ds = hf["kspace"]
    challenge = "singlecoil" if kspace_ds.ndim == 3 else "multicoil"
    index = _check_slice_index(path, slice_idx, kspace_ds.shape[0])
    recon_key = RECON_KEYS[challenge]
    slice_bytes = int(np.prod(kspace_ds.shape[1:], dtype=np.float64)) * np.dtype(np.complex64).itemsize
    if slice_bytes > _memory_bytes():
        # Checked before reading: with memory overcommit the allocation itself may not fail.
        raise FastMRIFormatError(
            path,
            f"slice {index} of 'kspace' {kspace_ds.shape} does not fit in memory "
            f"({slice_bytes / 2**30:.3g} GiB, this machine has {_memory_bytes() / 2**30:.3g} GiB)",
        )
    try:
        kspace = np.asarray(kspace_ds[index], dtype=np.complex64)
        target = np.asarray(hf[recon_key][index], dtype=np.float32) if recon_key in hf else None
    except OSError as exc:
        raise FastMRIFormatError(path, f"cannot read slice {index} ({exc})") from None
    except MemoryError:
        raise FastMRIFormatError(
            path, f"slice {index} of 'kspace' {kspace_ds.shape} does not fit in memory"
        ) from None
    check_finite(path, "kspace", index, kspace)
    if target is not None:
        check_finite(path, recon_key, index, target)
    if challenge == "singlecoil":
        kspace = kspace[None]
    return kspace, target


def _memory_bytes() -> float:
    """Physical memory of this machine (infinite where the OS does not say)."""
    try:
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return float("inf")


def check_finite(path: str | os.PathLike, dataset: str, slice_idx: int, values: np.ndarray) -> None:
    """Refuse NaN or Inf in one slice of a dataset, naming the file, the dataset and the slice.

    Raises:
        FastMRIFormatError: ``values`` holds a non-finite entry.
    """
    finite = np.isfinite(values)
    if not finite.all():
        bad = finite.size - int(finite.sum())
        raise FastMRIFormatError(
            path,
            f"slice {slice_idx} of {dataset!r} holds non-finite values (NaN or Inf): {bad} of {finite.size}",
        )


def read_file_mask(hf_or_path: h5py.File | str | os.PathLike) -> np.ndarray | None:
    """The stored column mask of a test or challenge file, bool ``(W,)``, or ``None`` if it has none.

    Accepts an open handle (e.g. from :func:`open_volume`) or a path, which is validated first.

    Raises:
        FastMRIFormatError: as :func:`inspect_volume`, e.g. a mask that is not ``(W,)``, not 0/1
            valued, or that does not sample the k-space centre (see :func:`check_file_mask`).
    """
    if isinstance(hf_or_path, h5py.File):
        return _read_file_mask(hf_or_path, Path(hf_or_path.filename))
    with open_volume(hf_or_path) as hf:
        return _read_file_mask(hf, Path(hf_or_path))


def _read_file_mask(hf: h5py.File, path: Path) -> np.ndarray | None:
    if FILE_MASK_KEY not in hf:
        return None
    try:
        mask = np.asarray(hf[FILE_MASK_KEY][()])
    except OSError as exc:
        raise FastMRIFormatError(path, f"cannot read {FILE_MASK_KEY!r} ({exc})") from None
    return check_file_mask(path, mask, hf["kspace"].shape[-1])


def check_file_mask(path: str | os.PathLike, mask: np.ndarray, width: int) -> np.ndarray:
    """A test file's stored column mask as bool ``(W,)``, refused unless it is plausible.

    The k-space of a test file is already undersampled by this mask, and the reconstruction trusts
    it: an all-zero mask gives an all-zero image, and NaN or negative entries would count as
    sampled columns. fastMRI's masks are 0/1 (or bool) and always sample the fully sampled centre,
    so a mask that misses the centre (DC) column ``W // 2`` is damaged.

    Raises:
        FastMRIFormatError: naming the file, for a mask of the wrong shape, non-finite, not 0/1
            valued, sampling no column, or not sampling the centre column.
    """
    mask = np.asarray(mask)
    if mask.shape != (width,):
        raise FastMRIFormatError(path, f"{FILE_MASK_KEY!r} has shape {mask.shape}, expected ({width},)")
    if mask.dtype.kind != "b":
        if mask.dtype.kind not in "iuf":
            raise FastMRIFormatError(
                path, f"{FILE_MASK_KEY!r} must be bool or 0/1 valued, got dtype {mask.dtype}"
            )
        finite = np.isfinite(mask)
        if not finite.all():
            raise FastMRIFormatError(
                path,
                f"{FILE_MASK_KEY!r} holds non-finite values (NaN or Inf) in {int((~finite).sum())} "
                f"of {width} columns",
            )
        odd = np.unique(mask[(mask != 0) & (mask != 1)])
        if odd.size:
            raise FastMRIFormatError(
                path,
                f"{FILE_MASK_KEY!r} must hold only 0 and 1 (column not sampled / sampled), "
                f"got {odd[:5].tolist()}",
            )
    sampled = mask != 0
    if not sampled.any():
        raise FastMRIFormatError(path, f"{FILE_MASK_KEY!r} samples no k-space column: nothing to reconstruct")
    if not sampled[width // 2]:
        raise FastMRIFormatError(
            path,
            f"{FILE_MASK_KEY!r} does not sample the centre column {width // 2} of k-space, which every "
            "fastMRI mask samples (a damaged mask)",
        )
    return sampled


def _describe(hf: h5py.File, path: Path) -> VolumeInfo:
    try:
        return _describe_unchecked(hf, path)
    except OSError as exc:
        raise FastMRIFormatError(path, f"corrupt HDF5 content ({exc})") from None


def _describe_unchecked(hf: h5py.File, path: Path) -> VolumeInfo:
    if "kspace" not in hf:
        raise FastMRIFormatError(path, f"no 'kspace' dataset (keys: {sorted(hf.keys())})")
    kspace = hf["kspace"]
    if not isinstance(kspace, h5py.Dataset) or kspace.dtype.kind != "c" or kspace.ndim not in (3, 4):
        raise FastMRIFormatError(
            path,
            "'kspace' must be complex (slices, H, W) or (slices, coils, H, W), got "
            + _describe_dataset(kspace),
        )
    challenge = "singlecoil" if kspace.ndim == 3 else "multicoil"
    num_slices = kspace.shape[0]
    if num_slices < 1 or min(kspace.shape[1:]) < 1:
        raise FastMRIFormatError(path, f"'kspace' is empty, shape {kspace.shape}")

    recon_key: str | None = RECON_KEYS[challenge]
    target_shape: tuple[int, int] | None = None
    if recon_key in hf:
        target = hf[recon_key]
        if not isinstance(target, h5py.Dataset) or target.ndim != 3 or target.dtype.kind not in "fiu":
            raise FastMRIFormatError(
                path, f"{recon_key!r} must be real (slices, h, w), got {_describe_dataset(target)}"
            )
        if target.shape[0] != num_slices:
            raise FastMRIFormatError(
                path, f"{recon_key!r} has {target.shape[0]} slices but 'kspace' has {num_slices}"
            )
        target_shape = (target.shape[1], target.shape[2])
    else:
        recon_key = None

    if "ismrmrd_header" not in hf:
        raise FastMRIFormatError(path, "no 'ismrmrd_header' dataset")
    try:
        encoding = parse_ismrmrd_header(_as_bytes(hf["ismrmrd_header"][()]))
    except (ValueError, TypeError) as exc:
        raise FastMRIFormatError(path, f"unparsable ismrmrd_header: {exc}") from None

    file_mask_shape = None
    if FILE_MASK_KEY in hf:
        mask = hf[FILE_MASK_KEY]
        width = kspace.shape[-1]
        if not isinstance(mask, h5py.Dataset) or mask.dtype.kind not in "biuf" or mask.shape != (width,):
            raise FastMRIFormatError(
                path,
                f"{FILE_MASK_KEY!r} must be a real or bool ({width},) column mask matching the k-space width "
                f"{width}, got {_describe_dataset(mask)}",
            )
        file_mask_shape = tuple(mask.shape)
        check_file_mask(path, mask[()], width)  # (W,) values: small enough to check with the metadata
    attrs = {key: _plain(value) for key, value in hf.attrs.items()}
    acceleration = _number_attr(path, attrs, "acceleration", float)
    num_low_frequency = _number_attr(path, attrs, "num_low_frequency", int)

    return VolumeInfo(
        path=path,
        challenge=challenge,
        num_slices=num_slices,
        num_coils=1 if challenge == "singlecoil" else kspace.shape[1],
        kspace_shape=tuple(kspace.shape),
        recon_key=recon_key,
        target_shape=target_shape,
        encoding=encoding,
        attrs=attrs,
        file_mask_shape=file_mask_shape,
        acceleration=acceleration,
        num_low_frequency=num_low_frequency,
    )


def _number_attr(path: Path, attrs: dict[str, Any], key: str, kind: type) -> Any:
    """A positive numeric attribute as ``kind`` (int ones must be whole), or None when absent."""
    if key not in attrs:
        return None
    value = attrs[key]
    number = value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    if number is None or not np.isfinite(number) or number <= 0 or (kind is int and number != int(number)):
        raise FastMRIFormatError(path, f"attribute {key!r} must be a positive {kind.__name__}, got {value!r}")
    return kind(number)


def _check_slice_index(path: Path, slice_idx: int, num_slices: int) -> int:
    if isinstance(slice_idx, (bool, np.bool_)) or not isinstance(slice_idx, (int, np.integer)):
        raise FastMRIFormatError(path, f"slice index must be an integer, got {slice_idx!r}")
    if not 0 <= slice_idx < num_slices:
        raise FastMRIFormatError(path, f"slice {slice_idx} out of range [0, {num_slices})")
    return int(slice_idx)


def _describe_dataset(obj: h5py.Dataset | h5py.Group) -> str:
    if isinstance(obj, h5py.Dataset):
        return f"dtype {obj.dtype}, shape {obj.shape}"
    return "a group"


def _as_bytes(value: Any) -> bytes:
    # Depending on how a file stored it, the header reads back as bytes, str or a 1-element array.
    if isinstance(value, np.ndarray):
        value = value.item() if value.size == 1 else value.tobytes()
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, bytes):
        return value
    raise TypeError(f"expected text, got {type(value).__name__}")


def _plain(value: Any) -> Any:
    """HDF5 attribute to a plain Python value (str, int, float or list)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value
