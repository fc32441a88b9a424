"""fastMRI's mask functions, reproduced draw for draw from fastMRI v0.3's ``fastmri/data/subsample.py``:
for the same shape, offset and seed every class returns the same mask and number of
low-frequency lines as its fastMRI namesake, so masks of the fastMRI challenge and of studies
built on fastMRI (per-volume seed ``tuple(map(ord, fname))``) are regenerated exactly.

A mask function is called as ``mask_func(shape, offset=None, seed=None)`` with a fastMRI k-space
shape ``(..., H, W, 2)`` and returns ``(mask, num_low_frequencies)``: ``mask`` is a float32 tensor
of shape ``[1, ..., 1, W, 1]`` selecting k-space columns (phase-encoding lines), and the centre
block of ``num_low_frequencies`` columns starts at ``(W - num_low_frequencies + 1) // 2``.
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Sequence

import numpy as np
import torch

Seed = int | tuple[int, ...] | None


@contextlib.contextmanager
def temp_seed(rng: np.random.RandomState, seed: Seed) -> Iterator[None]:
    """Reseed ``rng`` with ``seed`` for the duration of the block, then restore its state.

    With ``seed=None`` the generator is used as is, so unseeded calls advance it.
    """
    if seed is None:
        yield
        return
    saved_state = rng.get_state()
    rng.seed(seed)
    try:
        yield
    finally:
        rng.set_state(saved_state)


def center_start(num_cols: int, num_low_frequencies: int) -> int:
    # fastMRI's convention: for odd leftovers the extra column goes to the left of the block, so
    # the block always covers the DC column W // 2.
    return (num_cols - num_low_frequencies + 1) // 2


def _integer_acceleration(acceleration: float) -> int:
    # Equispaced and magic masks use the acceleration as a slice step.
    if float(acceleration) != int(acceleration):
        raise ValueError(f"acceleration {acceleration} must be an integer for equispaced and magic masks")
    return int(acceleration)


class MaskFunc:
    """Base class of fastMRI-style column masks: a fully sampled centre plus outer lines.

    ``__call__`` samples ``(centre mask, acceleration mask, num_low_frequencies)`` through
    :meth:`sample_mask` inside :func:`temp_seed` and returns their union. Subclasses provide
    :meth:`calculate_acceleration_mask` (and may override :meth:`sample_mask`).
    """

    def __init__(
        self,
        center_fractions: Sequence[float],
        accelerations: Sequence[float],
        allow_any_combination: bool = False,
        seed: int | None = None,
    ):
        """
        Args:
            center_fractions: fractions of the columns forming the fully sampled centre; one
                (fraction, acceleration) pair is drawn per call.
            accelerations: nominal undersampling factors, paired element-wise with
                ``center_fractions``.
            allow_any_combination: draw the fraction and the acceleration independently, so the
                two sequences may differ in length.
            seed: seed of the internal ``np.random.RandomState``.
        """
        if len(center_fractions) != len(accelerations) and not allow_any_combination:
            raise ValueError(
                f"center_fractions {list(center_fractions)} and accelerations "
                f"{list(accelerations)} must have the same length unless "
                "allow_any_combination is True"
            )
        if len(center_fractions) == 0 or len(accelerations) == 0:
            raise ValueError("center_fractions and accelerations must not be empty")
        for fraction in center_fractions:
            if not 0 <= fraction <= 1:
                raise ValueError(f"center fraction {fraction} is outside [0, 1]")
        for acceleration in accelerations:
            if not acceleration >= 1:
                raise ValueError(f"acceleration {acceleration} must be at least 1")
        self.center_fractions = center_fractions
        self.accelerations = accelerations
        self.allow_any_combination = allow_any_combination
        self.rng = np.random.RandomState(seed)

    def __call__(
        self,
        shape: Sequence[int],
        offset: int | None = None,
        seed: Seed = None,
    ) -> tuple[torch.Tensor, int]:
        """Sample a mask.

        Args:
            shape: k-space shape ``(..., H, W, 2)``; columns are drawn along ``shape[-2]``.
            offset: first line of equispaced/magic patterns; drawn at random when ``None``.
            seed: reseeds the generator for this call only (fastMRI uses
                ``tuple(map(ord, fname))`` per volume); its previous state is restored after.

        Returns:
            ``(mask, num_low_frequencies)``: float32 mask of shape ``[1]*len(shape)`` with
            ``W`` at axis -2, and the number of centre columns.
        """
        if len(shape) < 3:
            raise ValueError(f"shape {tuple(shape)} must have at least 3 dimensions (..., H, W, 2)")
        with temp_seed(self.rng, seed):
            center_mask, acceleration_mask, num_low_frequencies = self.sample_mask(shape, offset)
        return torch.maximum(center_mask, acceleration_mask), num_low_frequencies

    def sample_mask(self, shape: Sequence[int], offset: int | None) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Draw one (fraction, acceleration) pair and the two mask components.

        Returns:
            ``(center_mask, acceleration_mask, num_low_frequencies)``, both masks shaped as in
            :meth:`__call__`.
        """
        num_cols = shape[-2]
        center_fraction, acceleration = self.choose_acceleration()
        num_low_frequencies = int(round(num_cols * center_fraction))
        center_mask = self.reshape_mask(self.calculate_center_mask(shape, num_low_frequencies), shape)
        acceleration_mask = self.reshape_mask(
            self.calculate_acceleration_mask(num_cols, acceleration, offset, num_low_frequencies),
            shape,
        )
        return center_mask, acceleration_mask, num_low_frequencies

    def reshape_mask(self, mask: np.ndarray, shape: Sequence[int]) -> torch.Tensor:
        """Turn a (W,) column mask into a float32 tensor broadcastable over k-space ``shape``."""
        mask_shape = [1] * len(shape)
        mask_shape[-2] = shape[-2]
        return torch.from_numpy(mask.reshape(mask_shape).astype(np.float32))

    def calculate_center_mask(self, shape: Sequence[int], num_low_freqs: int) -> np.ndarray:
        """(W,) float32 mask of the ``num_low_freqs`` centre columns."""
        num_cols = shape[-2]
        mask = np.zeros(num_cols, dtype=np.float32)
        start = center_start(num_cols, num_low_freqs)
        mask[start : start + num_low_freqs] = 1
        return mask

    def calculate_acceleration_mask(
        self,
        num_cols: int,
        acceleration: float,
        offset: int | None,
        num_low_frequencies: int,
    ) -> np.ndarray:
        """(W,) mask of the columns sampled outside the centre."""
        raise NotImplementedError

    def choose_acceleration(self) -> tuple[float, float]:
        """Draw ``(center_fraction, acceleration)`` with fastMRI's generator calls."""
        if self.allow_any_combination:
            return self.rng.choice(self.center_fractions), self.rng.choice(self.accelerations)
        # randint(1) consumes no random numbers, so a single pair costs no draw.
        choice = self.rng.randint(len(self.center_fractions))
        return self.center_fractions[choice], self.accelerations[choice]


class RandomMaskFunc(MaskFunc):
    """Centre block plus outer columns kept independently with a fixed probability.

    ``prob = (W / acceleration - num_low) / (W - num_low)`` makes the expected number of columns
    ``W / acceleration``; the realised count varies from call to call. The uniform draws cover
    all ``W`` columns, centre included, as fastMRI does.
    """

    def calculate_acceleration_mask(
        self,
        num_cols: int,
        acceleration: float,
        offset: int | None,
        num_low_frequencies: int,
    ) -> np.ndarray:
        prob = (num_cols / acceleration - num_low_frequencies) / (num_cols - num_low_frequencies)
        return self.rng.uniform(size=num_cols) < prob


class EquiSpacedMaskFunc(MaskFunc):
    """Centre block plus every ``acceleration``-th column from ``offset``.

    As in GRAPPA acquisitions the spacing is exact, so the centre makes the realised
    acceleration lower than the nominal one.
    """

    def calculate_acceleration_mask(
        self,
        num_cols: int,
        acceleration: float,
        offset: int | None,
        num_low_frequencies: int,
    ) -> np.ndarray:
        step = _integer_acceleration(acceleration)
        if offset is None:
            offset = self.rng.randint(0, high=round(acceleration))
        mask = np.zeros(num_cols, dtype=np.float32)
        mask[offset::step] = 1
        return mask


class EquispacedMaskFractionFunc(MaskFunc):
    """Equispaced outer columns with the spacing stretched so the total is about ``W / acc``.

    The spacing ``acc * (num_low - W) / (num_low * acc - W)`` is fractional, so rounded
    positions are not exactly equispaced (fastMRI issue 54); kept because the public fastMRI
    multicoil data were masked this way.
    """

    def calculate_acceleration_mask(
        self,
        num_cols: int,
        acceleration: float,
        offset: int | None,
        num_low_frequencies: int,
    ) -> np.ndarray:
        excess = num_low_frequencies * acceleration - num_cols
        if excess == 0 or (excess > 0 and offset is None):
            # The centre alone reaches the target, so the spacing is infinite or negative; fastMRI
            # fails here with a bare "high <= 0" or a division by zero.
            raise ValueError(
                f"centre of {num_low_frequencies} columns leaves nothing to sample at "
                f"acceleration {acceleration} for width {num_cols}: lower the center fraction"
            )
        adjusted_acceleration = (acceleration * (num_low_frequencies - num_cols)) / excess
        if offset is None:
            offset = self.rng.randint(0, high=round(adjusted_acceleration))
        # With an explicit offset and a negative spacing fastMRI samples no outer column.
        mask = np.zeros(num_cols)
        positions = np.arange(offset, num_cols - 1, adjusted_acceleration)
        mask[np.round(positions).astype(np.int64)] = 1.0
        return mask


class MagicMaskFunc(MaskFunc):
    """Equispaced columns offset between the two halves of k-space (Defazio 2019).

    Positive frequencies ``k = +p`` and negative ones ``k = -(n + 1)`` are sampled on lattices
    shifted by two lines, so for accelerations above 2 no sampled line has its conjugate-symmetric
    partner sampled: the network can recover it from the partner. (Defazio, "Offset Sampling
    Improves Deep Learning based Accelerated MRI Reconstructions by Exploiting Symmetry",
    arXiv:1912.01101.)
    """

    def calculate_acceleration_mask(
        self,
        num_cols: int,
        acceleration: float,
        offset: int | None,
        num_low_frequencies: int,
    ) -> np.ndarray:
        if acceleration == 0:
            # Only MagicMaskFractionFunc gets here, when the centre alone reaches the target;
            # fastMRI raises, this keeps the centre-only mask and draws nothing.
            return np.zeros(num_cols, dtype=np.float32)
        step = _integer_acceleration(acceleration)
        if offset is None:
            offset = self.rng.randint(0, high=step)
        if offset % 2 == 0:
            offset_positive, offset_negative = offset + 1, offset + 2
        else:
            offset_positive, offset_negative = offset + 2, offset - 1

        # Build both halves in DC-first (uncentred) order, then centre with fftshift.
        num_positive = (num_cols + 1) // 2
        positive = np.zeros(num_positive, dtype=np.float32)
        negative = np.zeros(num_cols - num_positive, dtype=np.float32)
        positive[offset_positive::step] = 1
        negative[offset_negative::step] = 1
        return np.fft.fftshift(np.concatenate((positive, negative[::-1])))


class MagicMaskFractionFunc(MagicMaskFunc):
    """Magic mask whose spacing is chosen so the total is about ``W / acceleration``.

    The centre is clipped to between 1 and ``round(W / acceleration)`` columns and the outer
    spacing is ``round(W / (round(W / acceleration) - num_low))``.
    """

    def sample_mask(self, shape: Sequence[int], offset: int | None) -> tuple[torch.Tensor, torch.Tensor, int]:
        num_cols = shape[-2]
        center_fraction, acceleration = self.choose_acceleration()
        target_columns = round(num_cols / acceleration)
        num_low_frequencies = int(max(min(round(num_cols * center_fraction), target_columns), 1))
        outer_columns = target_columns - num_low_frequencies
        adjusted_acceleration = round(num_cols / outer_columns) if outer_columns > 0 else 0
        center_mask = self.reshape_mask(self.calculate_center_mask(shape, num_low_frequencies), shape)
        acceleration_mask = self.reshape_mask(
            self.calculate_acceleration_mask(num_cols, adjusted_acceleration, offset, num_low_frequencies),
            shape,
        )
        return center_mask, acceleration_mask, num_low_frequencies
