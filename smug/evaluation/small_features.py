"""Small-feature recovery: insert tiny bright features into a slice and score whether they come back.

Darestani, Chaudhari and Heckel ("Measuring Robustness in Deep Learning Based Compressive Sensing",
ICML 2021) ask whether a reconstruction method keeps a small detail that was present in the object
but is absent from every training image. Here a feature is a window of a few pixels:

- Geometry (:func:`feature_window`): a square of side ``size`` whose top-left pixel is
  ``(row - size // 2, col - size // 2)`` for the centre ``(row, col)``, or the disc of diameter
  ``size`` inscribed in that square.
- Placement (:func:`place_features`): inside the object (pixels with magnitude above 0.1 of the slice
  maximum), at least ``margin`` pixels from the border, windows at least ``spacing`` pixels apart so
  that the ring used for scoring one feature never contains another one. Positions are drawn from a
  generator seeded by a SHA-256 hash of ``(seed, fname, slice)`` (:func:`feature_seed`), so every
  model evaluated with the same seed sees the same features on the same slice.
- Value (:func:`insert_features`): a bright feature of magnitude ``contrast * max|target|`` (the
  slice maximum) added to the target inside each window, with the target's own phase at every
  pixel, so the *magnitude* image, which is what is scored, rises by exactly that amount in the
  window; a real-valued feature would raise the magnitude by less wherever the target's phase is not
  zero. The measurements get ``M F S f`` added; by linearity this is exactly the k-space of the coil
  images ``S (x + f)``, i.e. the feature was in the object when it was scanned.
- Scores (:func:`feature_scores`), on magnitudes: the target is first brought to the
  reconstruction's mean and standard deviation over the whole image
  (:func:`smug.evaluation.metrics.mean_std_match`), as the study does for all its metrics. Then
  ``feature_error = ||recon - target||_2 / ||target||_2`` over the window pixels; the contrast of an
  image is the mean over the window minus the mean over the surrounding ring (the window dilated by
  ``ring`` pixels in the max-norm, minus the window); the feature counts as ``detected`` when the
  reconstruction's contrast is at least half the matched target's.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
from scipy import ndimage

from smug.data import Batch
from smug.evaluation.metrics import mean_std_match
from smug.mri import adjoint_operator, forward_operator

Centre = tuple[int, int]

KINDS = ("square", "disc")
SUPPORT_THRESHOLD = 0.1
DEFAULT_RING = 2
DETECTION_FRACTION = 0.5


def feature_window(
    shape: Sequence[int], centre: Sequence[int], size: int, kind: str = "square"
) -> np.ndarray:
    """The pixels of one feature, bool ``(H, W)``.

    ``kind="square"``: rows ``row - size // 2 .. row - size // 2 + size - 1`` and the same for
    columns, ``size ** 2`` pixels (for odd ``size`` the centre pixel is the middle one; for even
    ``size`` it is the lower-right of the four middle ones). ``kind="disc"``: the pixels of that
    square whose centres lie within ``size / 2`` of the square's geometric centre.

    Args:
        shape: image shape ``(H, W)``.
        centre: ``(row, col)``.
        size: side (square) or diameter (disc) in pixels, at least 1.
        kind: "square" or "disc".

    Raises:
        ValueError: unknown kind, ``size < 1``, or a window reaching outside the image.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown feature kind {kind!r}; valid: {', '.join(KINDS)}")
    if len(shape) != 2 or len(centre) != 2:
        raise ValueError(
            f"shape and centre must be (H, W) and (row, col), got {tuple(shape)} and {tuple(centre)}"
        )
    if int(size) != size or size < 1:
        raise ValueError(f"feature size must be a positive integer, got {size}")
    height, width = int(shape[0]), int(shape[1])
    size = int(size)
    top, left = int(centre[0]) - size // 2, int(centre[1]) - size // 2
    if top < 0 or left < 0 or top + size > height or left + size > width:
        raise ValueError(
            f"a {size}-pixel {kind} centred at {tuple(int(c) for c in centre)} covers rows "
            f"{top}..{top + size - 1} and columns {left}..{left + size - 1}, "
            f"outside the {height}x{width} image"
        )
    window = np.zeros((height, width), dtype=bool)
    if kind == "square":
        window[top : top + size, left : left + size] = True
    else:
        offsets = np.arange(size) - (size - 1) / 2
        window[top : top + size, left : left + size] = (
            offsets[:, None] ** 2 + offsets[None, :] ** 2 <= (size / 2) ** 2
        )
    return window


def place_features(
    target_magnitude: np.ndarray,
    num_features: int,
    size: int,
    rng: np.random.Generator,
    margin: int = DEFAULT_RING,
    spacing: int = DEFAULT_RING,
) -> list[Centre]:
    """Random centres of ``num_features`` non-overlapping feature windows inside the object.

    A window (its ``size x size`` bounding square, see :func:`feature_window`) is admissible when all
    its pixels have magnitude above ``0.1 * max`` and it keeps ``margin`` pixels from every image
    border. Windows are drawn one after another in a random order of the admissible positions, each
    keeping at least ``spacing`` background pixels (max-norm) from those already placed; if a random
    order runs out of room, a few more orders and finally the raster order are tried.

    Args:
        target_magnitude: real ``(H, W)`` magnitude of the slice.
        num_features: how many windows, at least 0.
        size: window side in pixels, at least 1.
        rng: numpy generator; the same state gives the same centres.
        margin: minimum distance in pixels between a window and the image border.
        spacing: minimum gap in pixels between two windows (0 lets them touch, never overlap).

    Returns:
        ``[(row, col), ...]`` centres, ``num_features`` of them.

    Raises:
        ValueError: bad arguments, or fewer than ``num_features`` windows fit (the message says how
            many did).
    """
    magnitude = np.asarray(target_magnitude)
    if magnitude.ndim != 2 or np.iscomplexobj(magnitude):
        raise ValueError(
            f"target_magnitude must be a real (H, W) array, got {magnitude.dtype} {magnitude.shape}"
        )
    if int(num_features) != num_features or num_features < 0:
        raise ValueError(f"num_features must be a non-negative integer, got {num_features}")
    if int(size) != size or size < 1:
        raise ValueError(f"feature size must be a positive integer, got {size}")
    if margin < 0 or spacing < 0:
        raise ValueError(f"margin and spacing must be non-negative, got {margin} and {spacing}")
    num_features, size, margin, spacing = int(num_features), int(size), int(margin), int(spacing)
    peak = float(magnitude.max())
    if not peak > 0:
        raise ValueError("target_magnitude is zero everywhere; there is no object to place features in")
    admissible = _admissible_corners(magnitude > SUPPORT_THRESHOLD * peak, size, margin)
    corners = np.argwhere(admissible)
    best: list[tuple[int, int]] = []
    orders = [rng.permutation(len(corners)) for _ in range(8)] + [np.arange(len(corners))]
    for order in orders:
        placed = _greedy_placement(corners[order], admissible.shape, num_features, size + spacing)
        if len(placed) > len(best):
            best = placed
        if len(best) == num_features:
            break
    if len(best) < num_features:
        height, width = magnitude.shape
        raise ValueError(
            f"only {len(best)} of {num_features} requested {size}x{size} feature windows fit in this "
            f"{height}x{width} slice (inside magnitude > {SUPPORT_THRESHOLD} * max, margin {margin}, "
            f"spacing {spacing})"
        )
    return [(top + size // 2, left + size // 2) for top, left in best]


def _admissible_corners(support: np.ndarray, size: int, margin: int) -> np.ndarray:
    """bool ``(H, W)``: top-left corners whose ``size`` square lies in ``support`` and the margin."""
    height, width = support.shape
    admissible = np.zeros_like(support)
    rows, cols = height - 2 * margin - size + 1, width - 2 * margin - size + 1
    if rows <= 0 or cols <= 0:
        return admissible
    # Summed-area table: the support count of every size x size square in one vectorised step.
    table = np.zeros((height + 1, width + 1), dtype=np.int64)
    table[1:, 1:] = support.astype(np.int64).cumsum(0).cumsum(1)
    counts = table[size:, size:] - table[:-size, size:] - table[size:, :-size] + table[:-size, :-size]
    inner = counts[margin : margin + rows, margin : margin + cols] == size * size
    admissible[margin : margin + rows, margin : margin + cols] = inner
    return admissible


def _greedy_placement(
    corners: np.ndarray, shape: tuple[int, int], num_features: int, exclusion: int
) -> list[tuple[int, int]]:
    # Another window conflicts when its corner is closer than size + spacing in both directions.
    blocked = np.zeros(shape, dtype=bool)
    placed: list[tuple[int, int]] = []
    for top, left in corners:
        if len(placed) == num_features:
            break
        if blocked[top, left]:
            continue
        placed.append((int(top), int(left)))
        blocked[
            max(0, top - exclusion + 1) : top + exclusion, max(0, left - exclusion + 1) : left + exclusion
        ] = True
    return placed


def feature_seed(fname: str, slice_index: int, seed: int) -> int:
    """A 64-bit seed for the features of one slice, stable across runs and Python processes.

    SHA-256 rather than ``hash()``, whose value for strings changes with every interpreter start.
    """
    digest = hashlib.sha256(f"smug-small-features/{int(seed)}/{fname}/{int(slice_index)}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def _check_batch(batch: Batch) -> None:
    target, kspace = batch.target, batch.kspace
    if not isinstance(target, torch.Tensor) or target.ndim != 3 or not torch.is_complex(target):
        found = (
            f"{target.dtype} {tuple(target.shape)}"
            if isinstance(target, torch.Tensor)
            else type(target).__name__
        )
        raise ValueError(f"batch.target must be complex (B, H, W), got {found}")
    if not isinstance(kspace, torch.Tensor) or kspace.ndim != 4 or not torch.is_complex(kspace):
        found = (
            f"{kspace.dtype} {tuple(kspace.shape)}"
            if isinstance(kspace, torch.Tensor)
            else type(kspace).__name__
        )
        raise ValueError(f"batch.kspace must be complex (B, C, H, W), got {found}")
    if kspace.shape[0] != target.shape[0] or kspace.shape[-2:] != target.shape[-2:]:
        raise ValueError(
            f"batch.kspace shape {tuple(kspace.shape)} does not match batch.target shape {tuple(target.shape)}"
        )


@dataclass(frozen=True)
class InsertedFeatures:
    """Where :func:`insert_features` put the features of a batch.

    Attributes:
        masks: bool ``(B, H, W)``, the union of each sample's windows.
        windows: per sample, its bool ``(H, W)`` numpy windows in the order of its centres.
        centres: per sample, its ``(row, col)`` centres as int tuples.
    """

    masks: torch.Tensor
    windows: list[list[np.ndarray]]
    centres: list[list[Centre]]


def insert_features(
    batch: Batch, centres: Sequence[Sequence[Centre]], size: int, contrast: float, kind: str = "square"
) -> tuple[Batch, InsertedFeatures]:
    """Add bright features to the targets and their measurements to the k-space of a batch.

    For sample ``b`` the feature image is ``f = contrast * max|target_b| * target_b / |target_b|``
    on the union of its windows (phase 1 where the target is exactly 0) and 0 elsewhere. Then
    ``target += f`` and ``kspace += M F S f`` (``M F f`` single-coil), which equals simulating the
    masked k-space of coil images that contain the feature. An image-domain input ``zero_filled``,
    if present, gets ``A^H A f`` so it stays the adjoint of the new measurements plus its
    perturbation. The input batch is not modified.

    Args:
        batch: slices with their ``target``.
        centres: one list of ``(row, col)`` per sample (may be empty).
        size, kind: window geometry, see :func:`feature_window`.
        contrast: feature magnitude relative to the slice maximum, positive.

    Returns:
        ``(batch, features)``: the batch with the new ``target``, ``kspace`` and ``zero_filled``,
        and where the features are.
    """
    _check_batch(batch)
    if not (np.isfinite(contrast) and contrast > 0):
        raise ValueError(f"feature contrast must be a positive number, got {contrast}")
    target, kspace = batch.target, batch.kspace
    num_samples, height, width = target.shape
    if len(centres) != num_samples:
        raise ValueError(f"got feature centres for {len(centres)} samples but the batch has {num_samples}")
    windows = [
        [feature_window((height, width), centre, size, kind) for centre in sample] for sample in centres
    ]
    union = np.zeros((num_samples, height, width), dtype=bool)
    for index, sample_windows in enumerate(windows):
        for window in sample_windows:
            if (union[index] & window).any():
                raise ValueError(
                    f"feature windows of sample {index} overlap (centres {list(centres[index])})"
                )
            union[index] |= window
    feature_masks = torch.from_numpy(union).to(target.device)
    magnitude = target.abs()
    peak = magnitude.amax(dim=(-2, -1), keepdim=True)
    phase = torch.where(magnitude > 0, target / magnitude.clamp_min(torch.finfo(magnitude.dtype).tiny), 1)
    features = torch.where(feature_masks, contrast * peak * phase, 0).to(target.dtype)
    measured = forward_operator(features, batch.mask, batch.sens_maps)
    zero_filled = batch.zero_filled
    if zero_filled is not None:
        zero_filled = zero_filled + adjoint_operator(measured, batch.mask, batch.sens_maps)
    featured = replace(
        batch, target=target + features, kspace=kspace + measured.to(kspace.dtype), zero_filled=zero_filled
    )
    inserted = InsertedFeatures(
        masks=feature_masks,
        windows=windows,
        centres=[[(int(r), int(c)) for r, c in sample] for sample in centres],
    )
    return featured, inserted


def feature_transform(
    num_features: int,
    size: int,
    contrast: float,
    seed: int,
    kind: str = "square",
    margin: int = DEFAULT_RING,
    spacing: int = DEFAULT_RING,
    record: dict[tuple[str, int], list[np.ndarray]] | None = None,
) -> Callable[[Batch, int], Batch]:
    """A ``transform(batch, first_index) -> batch`` for :func:`smug.evaluation.scoring.reconstruct_volumes`.

    Each slice gets ``num_features`` features placed by :func:`place_features` on its own target
    magnitude with ``numpy.random.default_rng(feature_seed(fname, slice, seed))``, then inserted by
    :func:`insert_features`. Positions depend only on the slice and ``seed``, not on the batch
    order or ``first_index``, so every model gets the same features.

    Args:
        num_features, size, margin, spacing: see :func:`place_features`.
        contrast, kind: see :func:`insert_features`.
        seed: feature-placement seed.
        record: if given, filled with ``{(fname, slice): [window, ...]}`` for the scorer (the
            reconstructions of ``reconstruct_volumes`` do not carry the windows).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown feature kind {kind!r}; valid: {', '.join(KINDS)}")
    if not (np.isfinite(contrast) and contrast > 0):
        raise ValueError(f"feature contrast must be a positive number, got {contrast}")

    def transform(batch: Batch, first_index: int) -> Batch:
        _check_batch(batch)
        magnitudes = batch.target.abs().cpu().numpy()
        centres = []
        for fname, slice_index, magnitude in zip(batch.fnames, batch.slices, magnitudes):
            rng = np.random.default_rng(feature_seed(fname, int(slice_index), seed))
            try:
                centres.append(place_features(magnitude, num_features, size, rng, margin, spacing))
            except ValueError as exc:
                raise ValueError(f"{fname} slice {int(slice_index)}: {exc}") from None
        featured, inserted = insert_features(batch, centres, size, contrast, kind)
        if record is not None:
            for fname, slice_index, windows in zip(batch.fnames, batch.slices, inserted.windows):
                record[(fname, int(slice_index))] = windows
        return featured

    return transform


def ring_mask(window: np.ndarray, ring: int = DEFAULT_RING) -> np.ndarray:
    """The ``ring`` pixels around ``window`` (max-norm dilation minus the window), clipped to the image."""
    window = np.asarray(window, dtype=bool)
    if int(ring) != ring or ring < 1:
        raise ValueError(f"ring must be a positive integer, got {ring}")
    structure = np.ones((2 * int(ring) + 1,) * 2, dtype=bool)
    return ndimage.binary_dilation(window, structure=structure) & ~window


def feature_scores(
    recon_magnitude: np.ndarray, target_magnitude: np.ndarray, window: np.ndarray, ring: int = DEFAULT_RING
) -> dict[str, float | bool]:
    """How well one feature was recovered (see the module docstring for the definitions).

    Args:
        recon_magnitude: real ``(H, W)`` reconstruction magnitude.
        target_magnitude: real ``(H, W)`` target magnitude, with the feature.
        window: bool ``(H, W)`` pixels of the feature.
        ring: width in pixels of the background ring around the window.

    Returns:
        ``feature_error`` (relative L2 error inside the window after mean/std matching),
        ``true_contrast`` (window mean minus ring mean of the matched target),
        ``recovered_contrast`` (the same on the reconstruction), ``recovered_fraction`` (their
        ratio; nan when the true contrast is 0) and ``detected``
        (``recovered_contrast >= 0.5 * true_contrast``).
    """
    recon = np.asarray(recon_magnitude, dtype=np.float64)
    target = np.asarray(target_magnitude, dtype=np.float64)
    window = np.asarray(window)
    if recon.ndim != 2 or recon.shape != target.shape or window.shape != target.shape:
        raise ValueError(
            f"recon {recon.shape}, target {target.shape} and window {window.shape} "
            "must share one (H, W) shape"
        )
    if window.dtype != bool:
        raise ValueError(f"window must be a bool mask, got dtype {window.dtype}")
    if not window.any():
        raise ValueError("feature window is empty")
    background = ring_mask(window, ring)
    if not background.any():
        raise ValueError(f"the window covers the whole image; there is no {ring}-pixel ring around it")
    matched = mean_std_match(target, recon)
    reference_norm = np.linalg.norm(matched[window])
    error = np.linalg.norm(recon[window] - matched[window]) / reference_norm if reference_norm > 0 else np.inf
    true_contrast = float(matched[window].mean() - matched[background].mean())
    recovered_contrast = float(recon[window].mean() - recon[background].mean())
    return {
        "feature_error": float(error),
        "true_contrast": true_contrast,
        "recovered_contrast": recovered_contrast,
        "recovered_fraction": recovered_contrast / true_contrast if true_contrast != 0 else float("nan"),
        "detected": bool(recovered_contrast >= DETECTION_FRACTION * true_contrast),
    }


def score_features(
    volumes: dict, record: dict[tuple[str, int], list[np.ndarray]], ring: int = DEFAULT_RING
) -> list[dict]:
    """One row per inserted feature: :func:`feature_scores` of every window in ``record``.

    Args:
        volumes: ``{fname: VolumeStack}`` from :func:`smug.evaluation.scoring.reconstruct_volumes` run with a
            :func:`feature_transform` that filled ``record``.
        record: ``{(fname, slice): [window, ...]}``.

    Returns:
        dicts with ``volume``, ``slice``, ``feature`` (index within the slice) and the scores.
    """
    rows = []
    for fname, stack in sorted(volumes.items()):
        for slice_index, recon, target in zip(stack.slices, stack.recon, stack.target):
            key = (fname, int(slice_index))
            if key not in record:
                raise ValueError(f"no feature windows recorded for {fname} slice {int(slice_index)}")
            for index, window in enumerate(record[key]):
                scores = feature_scores(recon, target, window, ring)
                rows.append({"volume": fname, "slice": int(slice_index), "feature": index, **scores})
    return rows
