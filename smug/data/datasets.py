"""Slice datasets over fastMRI-format HDF5 volumes, with the SMUG code's preprocessing.

Per slice: the k-space columns the ISMRMRD header marks as padding are zeroed (never acquired;
fastMRI's VarNet transform zeroes its mask there), the fully sampled coil images are brought to the
recon size (centre-cropped, or zero-padded symmetrically where the image is narrower, as in some
brain FLAIR volumes), the target is their coil combination (SENSE with the volume's sensitivity maps
for multicoil, the single coil image for single-coil data), everything is divided by the target's
maximum magnitude, and k-space is recomputed from the crop. Models therefore see normalised complex
images with ``max |x| = 1``, which is what SMUG's clamp to [-1, 1] assumes, all of one size, so one
fixed column mask of the recon width fits every slice (the SMUG setting).

fastMRI's own transforms shrink the crop to the image for the narrow FLAIR volumes instead; padding
was chosen so knee, brain and FLAIR slices can share a mask and a batch.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Callable, Sequence

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset

from smug.mri import (
    MRIPhysics,
    sens_combine,
    rss,
    fft2c,
    ifft2c,
    load_mask,
    apply_column_mask,
    center_crop_or_pad,
)
from smug.data.fastmri_io import (
    EncodingInfo,
    VolumeInfo,
    check_recon_fits,
    inspect_volume,
    load_slice,
    open_volume,
    read_file_mask,
)
from smug.data.ismrmrd import zero_kspace_padding
from smug.data.sens_maps import read_sens_maps

LOG = logging.getLogger(__name__)
MaskSource = torch.Tensor | Callable | None
Padding = EncodingInfo | tuple[int, int] | None


@dataclass(frozen=True)
class SliceRef:
    """One slice of one volume."""

    path: Path
    slice_idx: int

    @property
    def fname(self) -> str:
        return self.path.name


def central_slices(num_slices: int, count: int) -> list[int]:
    """The ``count`` slices nearest the middle of a volume of ``num_slices`` (all if fewer)."""
    count = min(count, num_slices)
    start = (num_slices - count) // 2
    return list(range(start, start + count))


def select_slices(paths: Sequence[str | os.PathLike], num_slices: int | None) -> list[SliceRef]:
    """Pick ``num_slices`` slices spread over the volumes, central slices of each first.

    As the SMUG code, a split uses a fixed number of slices; taking them from the centre of each
    volume avoids the near-empty edge slices. ``None`` keeps every slice.

    The rule, for any mix of volumes (knee and brain, single- and multicoil, any depth): volumes are
    sorted by path; slices are dealt one per volume in turn, in that order, until ``num_slices`` are
    dealt, skipping volumes whose every slice is taken (so each volume gets an equal share, the
    first volumes one more when it does not divide, and shallow volumes pass their share on); each
    volume contributes its central slices (:func:`central_slices`). Anatomy plays no part: the share
    of brain slices is the share of brain volumes.

    Args:
        paths: fastMRI HDF5 volumes (validated here; a bad file raises naming it).
        num_slices: total slices wanted, or None for all.

    Returns:
        slice references ordered by volume, then slice index.
    """
    infos = [inspect_volume(p) for p in sorted(map(Path, paths))]
    if not infos:
        raise ValueError("select_slices: no volumes given")
    total = sum(info.num_slices for info in infos)
    if num_slices is None or num_slices >= total:
        per_volume = [info.num_slices for info in infos]
    else:
        # Equal share per volume, the remainder to the first volumes, capped by each volume's depth.
        per_volume = [0] * len(infos)
        remaining = num_slices
        while remaining > 0:
            for i, info in enumerate(infos):
                if remaining and per_volume[i] < info.num_slices:
                    per_volume[i] += 1
                    remaining -= 1
    return [
        SliceRef(Path(info.path), s)
        for info, k in zip(infos, per_volume)
        for s in central_slices(info.num_slices, k)
    ]


def preprocess_slice(
    kspace: np.ndarray,
    recon_size: Sequence[int],
    sens_maps: np.ndarray | None = None,
    padding: Padding = None,
) -> dict[str, torch.Tensor]:
    """SMUG preprocessing of one fully sampled slice.

    Args:
        kspace: complex ``(C, H, W)`` (``C = 1`` single-coil).
        recon_size: ``(h, w)``; the coil images are centre-cropped to it where larger and
            zero-padded symmetrically where smaller.
        sens_maps: complex ``(C, h, w)`` for multicoil, else None.
        padding: the volume's :class:`EncodingInfo` or ``(padding_left, padding_right)``: k-space
            columns outside that range are zeroed first. None keeps every column.

    Returns:
        dict with ``kspace`` complex64 ``(C, h, w)`` (fully sampled, normalised), ``target``
        complex64 ``(h, w)`` with ``max |target| = 1``, ``scale`` (the divisor) and ``sens_maps``
        complex64 ``(C, h, w)`` when given.
    """
    kspace = np.asarray(kspace, np.complex64)
    if padding is not None:
        kspace = zero_kspace_padding(kspace, padding)
    coil_images = center_crop_or_pad(ifft2c(torch.from_numpy(kspace)), recon_size)
    if sens_maps is None:
        if coil_images.shape[0] != 1:
            raise ValueError(f"multicoil k-space with {coil_images.shape[0]} coils needs sensitivity maps")
        target = coil_images[0]
    else:
        sens = torch.from_numpy(np.asarray(sens_maps, np.complex64))
        if sens.shape != coil_images.shape:
            raise ValueError(
                f"sensitivity maps of shape {tuple(sens.shape)} do not match cropped coil images "
                f"{tuple(coil_images.shape)}"
            )
        target = sens_combine(coil_images, sens)
    scale = target.abs().max().clamp_min(torch.finfo(torch.float32).tiny)
    out = {
        "kspace": fft2c(coil_images / scale),
        "target": target / scale,
        "scale": scale.to(torch.float32),
    }
    if sens_maps is not None:
        out["sens_maps"] = sens
    return out


def preprocess_undersampled_slice(
    kspace: np.ndarray, file_mask: np.ndarray, padding: Padding = None, sens_maps: np.ndarray | None = None
) -> dict[str, torch.Tensor]:
    """Preprocessing of one slice of a test file: k-space as stored (already undersampled), no target.

    The grid stays the stored ``(H, W)``, since cropping columns in the image domain would mix the
    sampled and unsampled k-space columns; crop reconstructions to the recon size at the end, as
    fastMRI's VarNet does. Without a target the divisor is the maximum of the zero-filled
    root-sum-of-squares image, so inputs are on roughly the training scale.

    Args:
        kspace: complex ``(C, H, W)``, zero outside the sampled columns.
        file_mask: the file's ``(W,)`` column mask.
        padding: as for :func:`preprocess_slice`; the mask is cleared there too.
        sens_maps: complex ``(C, H, W)``, or None.

    Returns:
        dict with ``kspace`` complex64 ``(C, H, W)`` (masked, normalised), ``mask`` bool ``(W,)``,
        ``scale`` and ``sens_maps`` when given.
    """
    kspace = np.asarray(kspace, np.complex64)
    mask = torch.from_numpy(np.asarray(file_mask) != 0)
    if mask.shape != (kspace.shape[-1],):
        raise ValueError(
            f"file mask of shape {tuple(mask.shape)} does not match k-space width {kspace.shape[-1]}"
        )
    if padding is not None:
        kspace = zero_kspace_padding(kspace, padding)
        mask = zero_kspace_padding(mask, padding)
    masked = apply_column_mask(torch.from_numpy(kspace)[None], mask)[0]
    scale = rss(ifft2c(masked)).max().clamp_min(torch.finfo(torch.float32).tiny)
    out = {"kspace": masked / scale, "mask": mask, "scale": scale.to(torch.float32)}
    if sens_maps is not None:
        sens = torch.from_numpy(np.asarray(sens_maps, np.complex64))
        if sens.shape != masked.shape:
            raise ValueError(
                f"sensitivity maps of shape {tuple(sens.shape)} do not match the stored k-space grid "
                f"{tuple(masked.shape)} of a test file"
            )
        out["sens_maps"] = sens
    return out


class SliceDataset(Dataset):
    """Undersampled slices for training and evaluation.

    Each item is a dict: ``kspace`` (masked, complex ``(C, h, w)``), ``mask`` (``(w,)`` bool),
    ``target`` (complex ``(h, w)``), ``sens_maps`` (multicoil only), ``scale``, ``fname``, ``slice``;
    see :func:`preprocess_slice`. Volumes smaller than the recon size (narrow FLAIR brain images) are
    zero-padded to it, and logged once per volume.

    Test and challenge files have no target; they raise unless ``allow_no_target`` is set. Their
    items (see :func:`preprocess_undersampled_slice`) keep the stored k-space grid ``(C, H, W)``,
    use the file's own stored mask whatever ``mask`` says, have no ``target``, and carry
    ``sens_maps`` only when ``sens_dir`` is given (maps on the stored grid). Do not mix them with
    target-carrying files in one batch.

    Args:
        refs: slices, e.g. from :func:`select_slices`.
        mask: a fixed ``(w,)`` column mask (the SMUG setting: one mask for every slice), a fastMRI
            ``MaskFunc`` (seeded per volume with ``tuple(map(ord, fname))``, fastMRI's convention),
            or None for fully sampled k-space.
        sens_dir: folder, or folders searched in order, of ``{fname}`` sensitivity-map files (a
            map file given instead stands for its folder)
            (:mod:`smug.data.sens_maps`) for multicoil volumes.
        recon_size: crop ``(h, w)``; default: the file header's reconSpace.
        cache: keep decoded slices in memory (after the first epoch reading costs nothing).
        allow_no_target: accept test files (no reconstruction dataset, a stored ``mask``).
        mask_name: where ``mask`` came from (its file), for error messages.
    """

    def __init__(
        self,
        refs: Sequence[SliceRef],
        mask: MaskSource = None,
        sens_dir: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
        recon_size: Sequence[int] | None = None,
        cache: bool = True,
        allow_no_target: bool = False,
        mask_name: str | None = None,
    ):
        self.refs = list(refs)
        self.mask = mask
        self.mask_name = mask_name or "the column mask"
        if sens_dir is None or isinstance(sens_dir, (str, os.PathLike)):
            sens_dir = [] if sens_dir is None else [sens_dir]
        # A map file stands for its folder, so a rule can name the files it depends on.
        self.sens_dirs = list(
            dict.fromkeys(Path(d).parent if Path(d).is_file() else Path(d) for d in sens_dir)
        )
        self.recon_size = None if recon_size is None else tuple(recon_size)
        self.cache = cache
        self._cached: dict[int, dict] = {}
        # h5py handles are opened lazily and per process: a DataLoader worker must not inherit a
        # handle opened in the parent.
        self._handles: dict[Path, h5py.File] = {}
        self._handle_pid = os.getpid()
        self.allow_no_target = allow_no_target
        self._info = {ref.path: inspect_volume(ref.path) for ref in self.refs}
        for info in self._info.values():
            self._check_volume(info)

    def _check_volume(self, info: VolumeInfo) -> None:
        # Refused here, before training or a reconstruction starts, not at the first slice read.
        check_recon_fits(info)
        if not info.has_target:
            if not self.allow_no_target:
                raise ValueError(
                    f"{info.path}: test files have no ground truth (no reconstruction dataset), which "
                    "training and evaluation need; use the *_val split for evaluation, or pass "
                    "allow_no_target=True to reconstruct it"
                )
            if info.file_mask_shape is None:
                raise ValueError(
                    f"{info.path}: no ground truth and no stored 'mask' dataset to undersample with"
                )
            return
        if info.challenge == "multicoil" and not self.sens_dirs:
            raise ValueError(f"{info.path}: multicoil volume but no sens_dir with sensitivity maps given")
        image_size = info.kspace_shape[-2:]
        recon_size = self.recon_size or info.encoding.recon_size[:2]
        if image_size[0] < recon_size[0] or image_size[1] < recon_size[1]:
            LOG.info(
                "%s: image %s is smaller than the recon size %s; zero-padding it symmetrically",
                info.path.name,
                tuple(image_size),
                tuple(recon_size),
            )

    def __len__(self) -> int:
        return len(self.refs)

    def sens_map_path(self, fname: str) -> Path:
        """The first ``sens_dir`` holding maps of ``fname`` (the first one if none does, so that
        the reader's "file not found" names a path)."""
        for folder in self.sens_dirs:
            if (folder / fname).is_file():
                return folder / fname
        return self.sens_dirs[0] / fname

    def _handle(self, path: Path) -> h5py.File:
        if os.getpid() != self._handle_pid:
            self._handles, self._handle_pid = {}, os.getpid()
        if path not in self._handles:
            self._handles[path] = open_volume(path)
        return self._handles[path]

    def _load(self, index: int) -> dict:
        ref = self.refs[index]
        info = self._info[ref.path]
        handle = self._handle(ref.path)
        kspace, _ = load_slice(handle, ref.slice_idx)
        sens = None
        if info.challenge == "multicoil" and self.sens_dirs:
            sens = read_sens_maps(self.sens_map_path(ref.fname), ref.slice_idx)
        # Read outside the try below: its errors name the file already.
        file_mask = None if info.has_target else read_file_mask(handle)
        try:
            if info.has_target:
                recon_size = self.recon_size or info.encoding.recon_size[:2]
                item = preprocess_slice(kspace, recon_size, sens, padding=info.encoding)
            else:
                item = preprocess_undersampled_slice(kspace, file_mask, info.encoding, sens)
        except ValueError as exc:
            raise ValueError(f"{ref.path} slice {ref.slice_idx}: {exc}") from None
        for key, value in item.items():
            # Finite k-space can still overflow float32 once transformed and normalised.
            if not torch.isfinite(value).all():
                raise ValueError(
                    f"{ref.path} slice {ref.slice_idx}: preprocessing gave non-finite {key!r} "
                    "(k-space values too large for float32?)"
                )
        item.update(fname=ref.fname, slice=ref.slice_idx)
        return item

    def column_mask(self, fname: str, width: int) -> torch.Tensor:
        """The ``(width,)`` bool mask for a volume."""
        if self.mask is None:
            return torch.ones(width, dtype=torch.bool)
        if isinstance(self.mask, torch.Tensor):
            if self.mask.shape[-1] != width:
                path = next(ref.path for ref in self.refs if ref.fname == fname)
                raise ValueError(
                    f"{self.mask_name}: mask width {self.mask.shape[-1]} does not match the k-space width "
                    f"{width} of {path} at the recon size; make the masks with masks.width equal to the "
                    "recon width"
                )
            return self.mask.bool()
        mask, _ = self.mask((1, width, 2), seed=tuple(map(ord, fname)))
        return mask.reshape(-1).bool()

    def __getitem__(self, index: int) -> dict:
        if index in self._cached:
            item = self._cached[index]
        else:
            item = self._load(index)
            if self.cache:
                self._cached[index] = item
        if "target" not in item:
            return dict(item)
        mask = self.column_mask(item["fname"], item["kspace"].shape[-1])
        return {**item, "kspace": apply_column_mask(item["kspace"][None], mask)[0], "mask": mask}


@dataclass(frozen=True)
class Batch:
    """Slices as every model, loss and attack takes them: :func:`collate` of :class:`SliceDataset`
    items, or built by hand. Derived batches (perturbed k-space, inserted features) are made with
    :func:`dataclasses.replace`, so the batch they came from stays as it was.

    Attributes:
        kspace: complex ``(B, C, H, W)``, zero off the sampled columns (``C = 1`` single-coil).
        mask: bool ``(B, W)``, or one ``(W,)`` column mask for every slice.
        target: complex ``(B, H, W)``, ``max |target| = 1`` per slice; None for test files.
        sens_maps: complex ``(B, C, H, W)``; None for single-coil data.
        scale: float ``(B,)``, what each slice was divided by in preprocessing; None if unknown.
        fnames: the volume file name of each slice (``B`` names).
        slices: the index of each slice in its volume (``B`` ints).
        zero_filled: complex ``(B, H, W)`` that models take instead of ``A^H y`` (an image-domain
            perturbation of it), or None.
    """

    kspace: torch.Tensor
    mask: torch.Tensor
    target: torch.Tensor | None = None
    sens_maps: torch.Tensor | None = None
    scale: torch.Tensor | None = None
    fnames: list[str] = field(default_factory=list)
    slices: list[int] = field(default_factory=list)
    zero_filled: torch.Tensor | None = None

    @property
    def physics(self) -> MRIPhysics:
        """The operator every model is given with ``kspace``: ``model(batch.kspace, batch.physics)``."""
        return MRIPhysics(self.mask, self.sens_maps, self.zero_filled)

    def tensors(self) -> dict[str, torch.Tensor]:
        """The tensor fields that are set, by name."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return {name: value for name, value in values.items() if isinstance(value, torch.Tensor)}

    def to(self, device: torch.device | str) -> Batch:
        """The batch with every tensor on ``device`` (copied asynchronously to a GPU)."""
        device = torch.device(device)
        non_blocking = device.type == "cuda"
        return self.map_tensors(lambda tensor: tensor.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> Batch:
        """Page-locked tensors; ``DataLoader(pin_memory=True)`` calls it, as it pins only the
        containers it knows itself."""
        return self.map_tensors(torch.Tensor.pin_memory)

    def map_tensors(self, function: Callable[[torch.Tensor], torch.Tensor]) -> Batch:
        """The batch with ``function`` applied to each of its tensors."""
        return replace(self, **{name: function(tensor) for name, tensor in self.tensors().items()})


def collate(items: list[dict]) -> Batch:
    """Stack :class:`SliceDataset` items into a :class:`Batch` (fields an item lacks stay None)."""

    def stacked(key: str) -> torch.Tensor | None:
        return torch.stack([item[key] for item in items]) if key in items[0] else None

    return Batch(
        kspace=stacked("kspace"),
        mask=stacked("mask"),
        target=stacked("target"),
        sens_maps=stacked("sens_maps"),
        scale=stacked("scale"),
        fnames=[item["fname"] for item in items],
        slices=[item["slice"] for item in items],
    )


def make_dataset(
    paths: Sequence[str | os.PathLike],
    num_slices: int | None,
    mask_path: str | os.PathLike | None,
    sens_dir: str | os.PathLike | Sequence[str | os.PathLike] | None,
) -> SliceDataset:
    """The central ``num_slices`` slices of each volume (all when None), undersampled with the
    column mask saved at ``mask_path`` (fully sampled when None)."""
    mask = None if mask_path is None else load_mask(mask_path)
    name = None if mask_path is None else str(mask_path)
    return SliceDataset(select_slices(paths, num_slices), mask=mask, sens_dir=sens_dir, mask_name=name)
