"""Shape and representation transforms: centre crops (and pads) and the complex <-> 2-channel boundary.

Networks see real tensors with real and imaginary parts as two channels; everything else in the
library works on complex tensors. :func:`complex_to_channels` and :func:`channels_to_complex` are
the only crossing points.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch


def center_crop(x: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Centre crop of the last two axes, with fastMRI's offsets ``(H - h) // 2``.

    Args:
        x: tensor or numpy array ``(..., H, W)``.
        shape: ``(h, w)`` with ``h <= H`` and ``w <= W``.

    Returns:
        ``(..., h, w)``.
    """
    h, w = int(shape[0]), int(shape[1])
    big_h, big_w = x.shape[-2], x.shape[-1]
    if not (0 < h <= big_h and 0 < w <= big_w):
        raise ValueError(f"cannot centre-crop an image of shape {(big_h, big_w)} to {(h, w)}")
    top = (big_h - h) // 2
    left = (big_w - w) // 2
    return x[..., top : top + h, left : left + w]


def center_crop_or_pad(x: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Bring the last two axes to ``shape``: centre-crop where larger, zero-pad where smaller.

    Crops use :func:`center_crop`'s offsets ``(H - h) // 2``; pads put ``(h - H) // 2`` zeros before
    and the rest after, so cropping a padded image back to its size is exact. fastMRI's transforms
    shrink the crop instead when an image is narrower than the recon size (some brain FLAIR volumes);
    padding keeps every slice at one size, so a single fixed column mask fits all of them.

    Args:
        x: tensor or numpy array ``(..., H, W)``.
        shape: ``(h, w)``, positive.

    Returns:
        ``(..., h, w)``, of ``x``'s type and dtype; a view of ``x`` when only cropping.
    """
    h, w = int(shape[0]), int(shape[1])
    if h < 1 or w < 1:
        raise ValueError(f"cannot crop or pad an image of shape {tuple(x.shape[-2:])} to {(h, w)}")
    big_h, big_w = x.shape[-2], x.shape[-1]
    x = center_crop(x, (min(h, big_h), min(w, big_w)))
    if x.shape[-2:] == (h, w):
        return x
    out_shape = tuple(x.shape[:-2]) + (h, w)
    out = np.zeros(out_shape, dtype=x.dtype) if isinstance(x, np.ndarray) else x.new_zeros(out_shape)
    top, left = (h - x.shape[-2]) // 2, (w - x.shape[-1]) // 2
    out[..., top : top + x.shape[-2], left : left + x.shape[-1]] = x
    return out


def complex_to_channels(x: torch.Tensor) -> torch.Tensor:
    """Complex ``(B, H, W)`` to real ``(B, 2, H, W)`` (real, imaginary)."""
    if not torch.is_complex(x):
        raise TypeError(f"complex_to_channels expects a complex tensor, got {x.dtype}")
    return torch.stack((x.real, x.imag), dim=-3)


def channels_to_complex(x: torch.Tensor) -> torch.Tensor:
    """Real ``(B, 2, H, W)`` to complex ``(B, H, W)``."""
    if x.shape[-3] != 2:
        raise ValueError(f"expected 2 channels (real, imaginary) at dim -3, got shape {tuple(x.shape)}")
    return torch.complex(x[..., 0, :, :].contiguous(), x[..., 1, :, :].contiguous())


def clamp_complex(x: torch.Tensor, low: float = -1.0, high: float = 1.0) -> torch.Tensor:
    """Clamp real and imaginary parts separately, as the SMUG code clamps its 2-channel images."""
    return torch.complex(x.real.clamp(low, high), x.imag.clamp(low, high))
