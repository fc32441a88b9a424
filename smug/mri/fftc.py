"""Centred, orthonormal 2-D Fourier transforms with fastMRI's conventions.

fastMRI's ``fft2c`` is ``fftshift(fft2(ifftshift(x), norm="ortho"))`` over the last two axes, and
``ifft2c`` its inverse. Both are unitary, so the adjoint of ``fft2c`` is ``ifft2c``; the operators
in :mod:`smug.mri.operators` rely on that. Unlike fastMRI (which carries a trailing real/imag axis of
size 2) these act on complex tensors directly.
"""

from __future__ import annotations

import torch

_DIMS = (-2, -1)


def fft2c(image: torch.Tensor) -> torch.Tensor:
    """Centred orthonormal 2-D FFT.

    Args:
        image: complex tensor ``(..., H, W)``.

    Returns:
        k-space, complex ``(..., H, W)``, with the DC term at ``(H // 2, W // 2)``.
    """
    _require_complex(image, "fft2c")
    shifted = torch.fft.ifftshift(image, dim=_DIMS)
    return torch.fft.fftshift(torch.fft.fft2(shifted, dim=_DIMS, norm="ortho"), dim=_DIMS)


def ifft2c(kspace: torch.Tensor) -> torch.Tensor:
    """Centred orthonormal 2-D inverse FFT, the exact inverse (and adjoint) of :func:`fft2c`.

    Args:
        kspace: complex tensor ``(..., H, W)`` with the DC term at ``(H // 2, W // 2)``.

    Returns:
        image, complex ``(..., H, W)``.
    """
    _require_complex(kspace, "ifft2c")
    shifted = torch.fft.ifftshift(kspace, dim=_DIMS)
    return torch.fft.fftshift(torch.fft.ifft2(shifted, dim=_DIMS, norm="ortho"), dim=_DIMS)


def _require_complex(x: torch.Tensor, name: str) -> None:
    if not torch.is_complex(x):
        raise TypeError(
            f"{name} expects a complex tensor, got dtype {x.dtype}; "
            "convert real/imag channels with smug.mri.transforms.channels_to_complex first"
        )
