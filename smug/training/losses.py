"""Training losses: MSE, L1 and a differentiable SSIM loss, selected by name.

Every loss has the signature ``loss(pred, target, data_range=None) -> scalar tensor`` so a training
loop can switch between them from a config string through :func:`get_loss`.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn


class SSIMLoss(nn.Module):
    """``1 - mean SSIM`` with a uniform ``win_size x win_size`` window, over the valid region.

    Local variances use the unbiased normalisation ``NP / (NP - 1)`` with ``NP = win_size^2``, so
    the value equals skimage's ``structural_similarity`` (defaults, ``use_sample_covariance=True``)
    averaged over the batch, as fastMRI's ``SSIMLoss`` does.
    """

    def __init__(self, win_size: int = 7, k1: float = 0.01, k2: float = 0.03):
        super().__init__()
        if win_size < 2 or win_size % 2 != 1:
            raise ValueError(f"SSIMLoss: win_size must be an odd integer >= 3, got {win_size}")
        self.win_size = win_size
        self.k1 = k1
        self.k2 = k2
        self.register_buffer("window", torch.ones(1, 1, win_size, win_size) / win_size**2)
        num_points = win_size**2
        self.cov_norm = num_points / (num_points - 1)

    def forward(self, pred: torch.Tensor, target: torch.Tensor, data_range: torch.Tensor) -> torch.Tensor:
        """SSIM loss averaged over the batch.

        Args:
            pred: real ``(B, 1, H, W)`` with ``H, W >= win_size``.
            target: real ``(B, 1, H, W)``.
            data_range: ``(B,)`` dynamic range of each target (fastMRI: the volume maximum).

        Returns:
            scalar tensor ``1 - mean SSIM``.
        """
        if pred.shape != target.shape:
            raise ValueError(
                f"SSIMLoss: pred {tuple(pred.shape)} and target {tuple(target.shape)} shapes differ"
            )
        if pred.ndim != 4 or pred.shape[1] != 1:
            raise ValueError(f"SSIMLoss expects (B, 1, H, W) inputs, got {tuple(pred.shape)}")
        if min(pred.shape[-2:]) < self.win_size:
            raise ValueError(
                f"SSIMLoss: image {tuple(pred.shape[-2:])} is smaller than the "
                f"{self.win_size}x{self.win_size} window"
            )
        data_range = torch.as_tensor(data_range, dtype=pred.dtype, device=pred.device).reshape(-1)
        if data_range.shape[0] != pred.shape[0]:
            raise ValueError(
                f"SSIMLoss: data_range has shape {tuple(data_range.shape)}, expected ({pred.shape[0]},)"
            )
        data_range = data_range[:, None, None, None]
        c1 = (self.k1 * data_range) ** 2
        c2 = (self.k2 * data_range) ** 2
        window = self.window.to(dtype=pred.dtype)

        mean_x = F.conv2d(pred, window)
        mean_y = F.conv2d(target, window)
        mean_xx = F.conv2d(pred * pred, window)
        mean_yy = F.conv2d(target * target, window)
        mean_xy = F.conv2d(pred * target, window)
        var_x = self.cov_norm * (mean_xx - mean_x * mean_x)
        var_y = self.cov_norm * (mean_yy - mean_y * mean_y)
        cov_xy = self.cov_norm * (mean_xy - mean_x * mean_y)

        numerator = (2 * mean_x * mean_y + c1) * (2 * cov_xy + c2)
        denominator = (mean_x**2 + mean_y**2 + c1) * (var_x + var_y + c2)
        ssim_map = numerator / denominator
        return 1 - ssim_map.mean()


def _check_same_shape(pred: torch.Tensor, target: torch.Tensor) -> None:
    # torch's pointwise losses would silently broadcast mismatched shapes.
    if pred.shape != target.shape:
        raise ValueError(f"loss: pred {tuple(pred.shape)} and target {tuple(target.shape)} shapes differ")


def mse_loss(
    pred: torch.Tensor, target: torch.Tensor, data_range: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean squared error over all elements; ``data_range`` is ignored. Any matching shapes."""
    _check_same_shape(pred, target)
    return F.mse_loss(pred, target)


def l1_loss(pred: torch.Tensor, target: torch.Tensor, data_range: torch.Tensor | None = None) -> torch.Tensor:
    """Mean absolute error over all elements; ``data_range`` is ignored. Any matching shapes."""
    _check_same_shape(pred, target)
    return F.l1_loss(pred, target)


def ssim_loss(
    pred: torch.Tensor, target: torch.Tensor, data_range: torch.Tensor | None = None
) -> torch.Tensor:
    """``1 - mean SSIM`` (7x7 uniform window) of real ``(B, 1, H, W)`` images.

    ``data_range`` is a ``(B,)`` tensor; ``None`` uses each target's maximum.
    """
    if data_range is None:
        data_range = target.detach().flatten(1).amax(dim=1)
    return SSIMLoss().to(pred.device)(pred, target, data_range)


LOSS_FUNCS: dict[str, Callable[..., torch.Tensor]] = {
    "mse": mse_loss,
    "l1": l1_loss,
    "ssim": ssim_loss,
}


def get_loss(name: str) -> Callable[..., torch.Tensor]:
    """The loss called ``name``: one of ``"mse"``, ``"l1"``, ``"ssim"``."""
    try:
        return LOSS_FUNCS[name]
    except KeyError:
        raise ValueError(f"unknown loss {name!r}; valid names: {', '.join(sorted(LOSS_FUNCS))}") from None
