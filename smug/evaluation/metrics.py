"""Image-quality metrics with fastMRI's ``evaluate.py`` semantics, plus the robustness study's helpers.

All metrics take numpy volumes ``(slices, H, W)`` of real magnitudes, ground truth first. As in
fastMRI, the peak used by PSNR and SSIM is the maximum of the whole ground-truth *volume*, not of
each slice, so numbers are comparable with the fastMRI leaderboard.
"""

from __future__ import annotations

from typing import Callable

import numpy as np


def _check_same_shape(gt: np.ndarray, pred: np.ndarray) -> None:
    if gt.shape != pred.shape:
        raise ValueError(
            f"ground truth and prediction shapes differ: gt {tuple(gt.shape)} vs pred {tuple(pred.shape)}"
        )


def mse(gt: np.ndarray, pred: np.ndarray) -> float:
    """Mean squared error over all voxels; any matching shapes."""
    gt, pred = np.asarray(gt), np.asarray(pred)
    _check_same_shape(gt, pred)
    return float(np.mean((gt - pred) ** 2))


def nmse(gt: np.ndarray, pred: np.ndarray) -> float:
    """Normalised MSE ``||gt - pred||^2 / ||gt||^2`` over the whole volume; any matching shapes."""
    gt, pred = np.asarray(gt), np.asarray(pred)
    _check_same_shape(gt, pred)
    return float(np.linalg.norm(gt - pred) ** 2 / np.linalg.norm(gt) ** 2)


def psnr(gt: np.ndarray, pred: np.ndarray, maxval: float | None = None) -> float:
    """PSNR in dB, ``10 log10(maxval^2 / mse)``; ``maxval`` defaults to ``gt.max()`` of the volume.

    Args:
        gt, pred: real arrays of the same shape, typically ``(slices, H, W)``.
        maxval: peak value; ``None`` for fastMRI's choice, the ground-truth maximum.
    """
    gt, pred = np.asarray(gt), np.asarray(pred)
    _check_same_shape(gt, pred)
    data_range = gt.max() if maxval is None else maxval
    # skimage.metrics pulls in scipy.stats (0.6 s); imported here so jobs that never score start faster.
    from skimage.metrics import peak_signal_noise_ratio

    return float(peak_signal_noise_ratio(gt, pred, data_range=data_range))


def ssim(gt: np.ndarray, pred: np.ndarray, maxval: float | None = None) -> float:
    """Mean SSIM over slices (skimage defaults: 7x7 uniform window, sample covariance).

    Args:
        gt, pred: real volumes ``(slices, H, W)`` with ``H, W >= 7``.
        maxval: data range; ``None`` for the maximum of the whole ground-truth volume, shared by
            every slice (fastMRI's convention, not a per-slice maximum).
    """
    gt, pred = np.asarray(gt), np.asarray(pred)
    if gt.ndim != 3 or pred.ndim != 3:
        raise ValueError(
            f"ssim expects 3-D volumes (slices, H, W): gt {tuple(gt.shape)}, pred {tuple(pred.shape)}"
        )
    _check_same_shape(gt, pred)
    from skimage.metrics import structural_similarity

    data_range = gt.max() if maxval is None else maxval
    per_slice = [
        structural_similarity(gt_slice, pred_slice, data_range=data_range)
        for gt_slice, pred_slice in zip(gt, pred)
    ]
    return float(np.mean(per_slice))


METRIC_FUNCS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "NMSE": nmse,
    "PSNR": psnr,
    "SSIM": ssim,
}


def mean_std_match(reference: np.ndarray, recon: np.ndarray) -> np.ndarray:
    """Affinely map ``reference`` to the mean and standard deviation of ``recon``.

    Darestani et al. score a reconstruction against a reference brought to the reconstruction's
    first two moments, so that a global intensity scale or offset of a method is not counted as
    error. Statistics are taken over the whole array.

    Args:
        reference: real array of any shape.
        recon: real array of the same shape.

    Returns:
        ``(reference - mean(reference)) / std(reference) * std(recon) + mean(recon)``, the shape of
        ``reference``.
    """
    reference, recon = np.asarray(reference, dtype=np.float64), np.asarray(recon, dtype=np.float64)
    if reference.shape != recon.shape:
        raise ValueError(
            f"reference and reconstruction shapes differ: reference {reference.shape} vs recon {recon.shape}"
        )
    ref_std = reference.std()
    if not ref_std > 0:
        raise ValueError("mean_std_match: the reference is constant (std 0), so it cannot be rescaled")
    return (reference - reference.mean()) / ref_std * recon.std() + recon.mean()


def tile_scores(target: np.ndarray, image: np.ndarray) -> dict[str, float]:
    """PSNR, SSIM and NMSE of one shown image (a figure's tile) against the target shown beside it,
    on exactly those pixels; the peak and data range are the shown target's maximum, as fastMRI uses
    the volume's."""
    target, image = np.asarray(target, dtype=np.float64), np.asarray(image, dtype=np.float64)
    if not np.isfinite(image).all():
        return {"PSNR": float("nan"), "SSIM": float("nan"), "NMSE": float("nan")}
    return {
        "PSNR": psnr(target, image),
        "SSIM": ssim(target[None], image[None]),
        "NMSE": nmse(target, image),
    }
