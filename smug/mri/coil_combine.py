"""Coil combination: root-sum-of-squares (fastMRI's ``rss``) and SENSE combination/expansion."""

from __future__ import annotations

import torch


def rss(coil_images: torch.Tensor, dim: int = -3) -> torch.Tensor:
    """Root-sum-of-squares over the coil axis, as fastMRI's ``reconstruction_rss``.

    Args:
        coil_images: complex or real ``(..., coils, H, W)``.
        dim: coil axis.

    Returns:
        real magnitude ``(..., H, W)``.
    """
    return torch.sqrt((coil_images.abs() ** 2).sum(dim))


def sens_combine(coil_images: torch.Tensor, sens_maps: torch.Tensor) -> torch.Tensor:
    """Adjoint of :func:`sens_expand`: ``sum_c conj(S_c) x_c``.

    Args:
        coil_images: complex ``(..., coils, H, W)``.
        sens_maps: complex ``(..., coils, H, W)``, normalised so that ``sum_c |S_c|^2 = 1``
            inside the object.

    Returns:
        complex ``(..., H, W)``.
    """
    return (sens_maps.conj() * coil_images).sum(-3)


def sens_expand(image: torch.Tensor, sens_maps: torch.Tensor) -> torch.Tensor:
    """Coil images ``S_c x`` of one complex image.

    Args:
        image: complex ``(..., H, W)``.
        sens_maps: complex ``(..., coils, H, W)``.

    Returns:
        complex ``(..., coils, H, W)``.
    """
    return sens_maps * image.unsqueeze(-3)
