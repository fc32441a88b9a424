"""MRI forward operators and their adjoints.

Single-coil: ``A = M F``. Multicoil SENSE: ``A = M F S``. ``F`` is :func:`smug.mri.fftc.fft2c` (unitary),
``M`` a binary column mask, ``S`` the coil sensitivities. k-space always carries a coil axis,
``(B, C, H, W)``, with ``C = 1`` for single-coil data, so one code path serves both; single-coil is
``sens_maps=None``.
"""

from __future__ import annotations

from typing import Callable

import torch

from smug.mri.coil_combine import sens_combine, sens_expand
from smug.mri.fftc import fft2c, ifft2c


def broadcast_mask(mask: torch.Tensor, kspace_ndim: int = 4) -> torch.Tensor:
    """Reshape a column mask so it broadcasts against k-space ``(B, C, H, W)``.

    Args:
        mask: ``(W,)`` (one mask for the batch) or ``(B, W)`` (one per sample), bool or real.
        kspace_ndim: number of dimensions of the k-space it will multiply.

    Returns:
        ``(1, 1, 1, W)`` or ``(B, 1, 1, W)`` in the mask's dtype.
    """
    if mask.ndim == 1:
        return mask.reshape((1,) * (kspace_ndim - 1) + (-1,))
    if mask.ndim == 2:
        return mask.reshape((mask.shape[0],) + (1,) * (kspace_ndim - 2) + (mask.shape[1],))
    raise ValueError(f"a column mask must be (W,) or (B, W), got shape {tuple(mask.shape)}")


def apply_column_mask(kspace: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Zero the unsampled columns of ``kspace`` ``(B, C, H, W)`` with a ``(W,)`` or ``(B, W)`` mask."""
    if mask.shape[-1] != kspace.shape[-1]:
        raise ValueError(f"mask width {mask.shape[-1]} does not match k-space width {kspace.shape[-1]}")
    return kspace * broadcast_mask(mask, kspace.ndim).to(kspace.real.dtype)


def forward_operator(
    image: torch.Tensor, mask: torch.Tensor, sens_maps: torch.Tensor | None = None
) -> torch.Tensor:
    """``A x``: image ``(B, H, W)`` complex to masked k-space ``(B, C, H, W)``.

    Args:
        image: complex ``(B, H, W)``.
        mask: column mask ``(W,)`` or ``(B, W)``.
        sens_maps: complex ``(B, C, H, W)``, or None for single-coil (``C = 1``).
    """
    coil_images = image.unsqueeze(1) if sens_maps is None else sens_expand(image, sens_maps)
    return apply_column_mask(fft2c(coil_images), mask)


def adjoint_operator(
    kspace: torch.Tensor, mask: torch.Tensor, sens_maps: torch.Tensor | None = None
) -> torch.Tensor:
    """``A^H y``: k-space ``(B, C, H, W)`` to the zero-filled complex image ``(B, H, W)``."""
    coil_images = ifft2c(apply_column_mask(kspace, mask))
    if sens_maps is None:
        return coil_images.squeeze(1)
    return sens_combine(coil_images, sens_maps)


def normal_operator(
    image: torch.Tensor, mask: torch.Tensor, sens_maps: torch.Tensor | None = None
) -> torch.Tensor:
    """``A^H A x`` for a complex image ``(B, H, W)``, with 1-D FFTs along the columns only.

    A column mask does not depend on the readout row, so the readout FFT of ``F = F_H F_W`` cancels:
    ``F^H M F = F_W^H M F_W``. And shifting the mask instead of the data,
    ``ifftshift(M fftshift(z)) = ifftshift(M) z``, leaves one shift on each side. The result equals
    ``adjoint_operator(forward_operator(x))`` up to rounding, at a fraction of the cost: this is the
    inner loop of every conjugate-gradient data-consistency step.
    """
    coil_images = image.unsqueeze(1) if sens_maps is None else sens_expand(image, sens_maps)
    if mask.shape[-1] != coil_images.shape[-1]:
        raise ValueError(f"mask width {mask.shape[-1]} does not match image width {coil_images.shape[-1]}")
    shifted_mask = torch.fft.ifftshift(broadcast_mask(mask, coil_images.ndim), dim=-1)
    columns = torch.fft.fft(torch.fft.ifftshift(coil_images, dim=-1), dim=-1, norm="ortho")
    coil_images = torch.fft.fftshift(
        torch.fft.ifft(columns * shifted_mask.to(columns.real.dtype), dim=-1, norm="ortho"), dim=-1
    )
    if sens_maps is None:
        return coil_images.squeeze(1)
    return sens_combine(coil_images, sens_maps)


def normal_operator_fn(
    mask: torch.Tensor, sens_maps: torch.Tensor | None, width: int
) -> Callable[[torch.Tensor], torch.Tensor]:
    """:func:`normal_operator` for one ``(mask, sens_maps)``, prepared once for an iterative solver.

    For an even ``width`` the centring shifts become signs: with ``c = (-1)^n`` along the columns,
    ``fftshift(fft(ifftshift(v))) = (-1)^(N/2) c fft(c v)``, and the signs of the forward and inverse
    transforms cancel around the mask, so ``A^H A x = S'^H ifft(M fft(S' x))`` with ``S' = c S``
    computed once. No data is shifted in the loop (odd widths fall back to :func:`normal_operator`).

    Args:
        mask: column mask ``(W,)`` or ``(B, W)``.
        sens_maps: complex ``(B, C, H, W)``, or None for single-coil.
        width: ``W`` of the images the closure will be applied to.

    Returns:
        ``x -> A^H A x`` on complex ``(B, H, W)``.
    """
    if mask.shape[-1] != width:
        raise ValueError(f"mask width {mask.shape[-1]} does not match image width {width}")
    if width % 2:
        return lambda image: normal_operator(image, mask, sens_maps)
    dtype = torch.float64 if sens_maps is not None and sens_maps.dtype == torch.complex128 else torch.float32
    device = mask.device
    signs = 1.0 - 2.0 * (torch.arange(width, device=device) % 2).to(dtype)
    modulated = signs.reshape(1, 1, 1, width) if sens_maps is None else sens_maps * signs
    # Prepared once rather than on every call: the mask in the data's complex dtype (a real mask
    # would be promoted by a copy at every product) and the conjugated maps, resolved (a lazy
    # conjugate is materialised by a copy at every product).
    complex_dtype = torch.complex128 if dtype == torch.float64 else torch.complex64
    column_mask = broadcast_mask(mask, 4).to(complex_dtype)
    conjugated = modulated.conj().resolve_conj()

    def forward(image: torch.Tensor) -> torch.Tensor:
        coil_images = sens_expand(image, modulated)
        columns = torch.fft.fft(coil_images, dim=-1, norm="ortho") * column_mask
        return (conjugated * torch.fft.ifft(columns, dim=-1, norm="ortho")).sum(-3)

    class _Normal(torch.autograd.Function):
        # A^H A is Hermitian, so its backward is itself: one more application, with nothing saved
        # for autograd (the maps and the mask are data, never differentiated).
        @staticmethod
        def forward(ctx, image: torch.Tensor) -> torch.Tensor:
            return forward(image)

        @staticmethod
        def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
            return _Normal.apply(grad)

    return _Normal.apply
