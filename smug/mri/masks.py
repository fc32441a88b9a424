"""k-space undersampling masks: the registry of mask types (fastMRI's, from
:mod:`smug.mri.mask_functions`, and the study's variable-density one), and saving, loading and
applying a mask.

:func:`variable_density_mask` is the 1-D variable-density random mask of the SMUG experiments,
which, unlike fastMRI's random mask, keeps exactly ``round(W / acceleration)`` columns.

Complex k-space elsewhere in this package is a complex tensor ``(..., H, W)``; :func:`column_mask`
and :func:`apply_mask` bridge fastMRI-shaped masks to it.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from smug.utils import atomic_path
from smug.mri.operators import apply_column_mask
from smug.mri.mask_functions import (
    EquiSpacedMaskFunc,
    EquispacedMaskFractionFunc,
    MagicMaskFractionFunc,
    MagicMaskFunc,
    MaskFunc,
    RandomMaskFunc,
    center_start,
)


def _variable_density_outer_columns(
    num_cols: int,
    num_low_frequencies: int,
    num_total: int,
    rng: np.random.RandomState,
    decay: float,
) -> np.ndarray:
    """(W,) bool mask of ``num_total - num_low_frequencies`` outer columns drawn from ``rng``.

    Column ``j`` has weight ``(1 - r_j) ** decay`` with ``r_j`` its distance to the DC column
    ``W // 2`` divided by one more than the largest distance, so every column keeps a non-zero
    weight and ``choice`` without replacement can always fill the quota.
    """
    if not 0 <= num_low_frequencies <= num_total <= num_cols:
        raise ValueError(
            f"the centre block of {num_low_frequencies} columns does not fit in the "
            f"{num_total} columns to keep out of {num_cols}: lower center_fraction or acceleration"
        )
    if decay < 0:
        raise ValueError(f"decay {decay} must be non-negative")
    start = center_start(num_cols, num_low_frequencies)
    outside = np.ones(num_cols, dtype=bool)
    outside[start : start + num_low_frequencies] = False
    candidates = np.flatnonzero(outside)

    distance = np.abs(np.arange(num_cols) - num_cols // 2)
    weights = (1.0 - distance / (distance.max() + 1.0)) ** decay
    weights = weights[candidates]

    mask = np.zeros(num_cols, dtype=bool)
    num_outer = num_total - num_low_frequencies
    if num_outer > 0:
        chosen = rng.choice(candidates, size=num_outer, replace=False, p=weights / weights.sum())
        mask[chosen] = True
    return mask


def variable_density_mask(
    width: int,
    acceleration: float,
    center_fraction: float,
    seed: int | Sequence[int],
    decay: float = 2.0,
) -> np.ndarray:
    """1-D Cartesian variable-density random column mask with an exact line count.

    The centre block of ``round(width * center_fraction)`` columns (fastMRI's placement) is
    fully sampled; the other columns are drawn without replacement with probability decaying as
    ``(1 - r) ** decay`` in the normalised distance ``r`` from the DC column ``width // 2``,
    until ``round(width / acceleration)`` columns are kept in total.

    Args:
        width: number of k-space columns ``W``.
        acceleration: nominal undersampling factor, at least 1.
        center_fraction: fraction of columns in the fully sampled centre, in [0, 1].
        seed: seed of the ``np.random.RandomState`` drawing the outer columns.
        decay: exponent of the density; 0 draws the outer columns uniformly.

    Returns:
        (W,) bool numpy array; identical for identical arguments.
    """
    if width < 1:
        raise ValueError(f"width {width} must be positive")
    if not acceleration >= 1:
        raise ValueError(f"acceleration {acceleration} must be at least 1")
    if not 0 <= center_fraction <= 1:
        raise ValueError(f"center_fraction {center_fraction} is outside [0, 1]")
    num_low_frequencies = round(width * center_fraction)
    num_total = round(width / acceleration)
    outer = _variable_density_outer_columns(
        width, num_low_frequencies, num_total, np.random.RandomState(seed), decay
    )
    start = center_start(width, num_low_frequencies)
    outer[start : start + num_low_frequencies] = True
    return outer


class VariableDensityMaskFunc(MaskFunc):
    """:func:`variable_density_mask` behind the ``MaskFunc`` interface.

    Every mask keeps exactly ``round(W / acceleration)`` columns. With a single
    (fraction, acceleration) pair, ``VariableDensityMaskFunc([cf], [acc])(shape, seed=s)`` equals
    ``variable_density_mask(W, acc, cf, s)``. ``offset`` is ignored.
    """

    def __init__(
        self,
        center_fractions: Sequence[float],
        accelerations: Sequence[float],
        allow_any_combination: bool = False,
        seed: int | None = None,
        decay: float = 2.0,
    ):
        super().__init__(center_fractions, accelerations, allow_any_combination, seed)
        self.decay = decay

    def calculate_acceleration_mask(
        self,
        num_cols: int,
        acceleration: float,
        offset: int | None,
        num_low_frequencies: int,
    ) -> np.ndarray:
        return _variable_density_outer_columns(
            num_cols, num_low_frequencies, round(num_cols / acceleration), self.rng, self.decay
        )


MASK_TYPES: dict[str, type[MaskFunc]] = {
    "random": RandomMaskFunc,
    "equispaced": EquiSpacedMaskFunc,
    "equispaced_fraction": EquispacedMaskFractionFunc,
    "magic": MagicMaskFunc,
    "magic_fraction": MagicMaskFractionFunc,
    "variable_density": VariableDensityMaskFunc,
}


def create_mask_for_mask_type(
    mask_type: str,
    center_fractions: Sequence[float],
    accelerations: Sequence[float],
    allow_any_combination: bool = False,
    seed: int | None = None,
) -> MaskFunc:
    """Build the mask function named ``mask_type`` (one of :data:`MASK_TYPES`)."""
    try:
        mask_class = MASK_TYPES[mask_type]
    except KeyError:
        raise ValueError(f"unknown mask type {mask_type!r}; valid types: {', '.join(MASK_TYPES)}") from None
    return mask_class(center_fractions, accelerations, allow_any_combination, seed)


def column_mask(mask: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Flatten a column mask to a (W,) bool tensor.

    Args:
        mask: fastMRI-shaped ``[1, ..., W, 1]`` (or already ``(W,)``) mask, any numeric or bool
            dtype; non-zero entries are sampled.

    Returns:
        (W,) bool tensor on the input's device.
    """
    mask = torch.as_tensor(mask)
    if mask.dim() == 0 or sum(size != 1 for size in mask.shape) > 1:
        raise ValueError(
            f"mask of shape {tuple(mask.shape)} is not a column mask: at most one axis may "
            "have size other than 1"
        )
    width = max(mask.shape)
    return mask.reshape(width) != 0


def apply_mask(kspace: torch.Tensor, mask: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Zero the unsampled columns of complex k-space.

    Args:
        kspace: complex tensor ``(..., H, W)``.
        mask: (W,) column mask, or a fastMRI-shaped one (see :func:`column_mask`).

    Returns:
        complex tensor ``(..., H, W)`` equal to ``kspace`` on sampled columns and 0 elsewhere.
    """
    # The operators' masking (and its width check) serves fastMRI-shaped masks once flattened.
    return apply_column_mask(kspace, column_mask(mask).to(kspace.device))


def save_mask(
    path: str | os.PathLike,
    mask: np.ndarray | torch.Tensor,
    *,
    num_low_frequencies: int,
    acceleration: float,
    center_fraction: float,
    mask_type: str,
    seed: int,
) -> None:
    """Write a column mask and how it was made to ``path`` (.npz), atomically.

    The file holds ``mask`` (W,) bool, the scalars given, and ``realised_acceleration``
    ``W / (number of sampled columns)``.
    """
    columns = column_mask(mask).cpu().numpy()
    num_sampled = int(columns.sum())
    if num_sampled == 0:
        raise ValueError(f"refusing to write {path}: the mask samples no column")
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        # An open handle stops numpy from appending ".npz" to the temporary name.
        np.savez(
            handle,
            mask=columns,
            num_low_frequencies=np.int64(num_low_frequencies),
            acceleration=np.float64(acceleration),
            center_fraction=np.float64(center_fraction),
            mask_type=np.str_(mask_type),
            seed=np.int64(seed),
            realised_acceleration=np.float64(columns.size / num_sampled),
        )


def load_mask(path: str | os.PathLike) -> torch.Tensor:
    """Read the column mask written by :func:`save_mask`.

    Returns:
        (W,) bool tensor.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: ``path`` is not a readable .npz holding a non-empty 1-D 0/1 ``mask``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"mask file {path} does not exist")
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"mask file {path} is not a readable .npz: {exc}") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ValueError(f"mask file {path} is a bare array, expected an .npz with a 'mask' entry")
    with archive:
        if "mask" not in archive.files:
            raise ValueError(f"mask file {path} has no 'mask' entry (found {archive.files})")
        try:
            mask = archive["mask"]
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise ValueError(f"mask file {path} is corrupt: {exc}") from None
    if mask.ndim != 1 or mask.size == 0:
        raise ValueError(f"mask file {path}: 'mask' has shape {mask.shape}, expected (W,)")
    if mask.dtype != bool and not np.isin(mask, (0, 1)).all():
        raise ValueError(f"mask file {path}: 'mask' has values other than 0 and 1")
    return torch.from_numpy(mask.astype(bool))
