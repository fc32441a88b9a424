"""Orthonormal 2-D discrete wavelet transform with periodic boundaries, in torch.

The transform is the classic Mallat pyramid: one level filters the rows and the columns with the
low-pass ``h`` and high-pass ``g`` filters and keeps every second sample; the next level repeats
this on the low-low block only. Coefficients stay in one tensor of the image's shape (the standard
in-place layout), so that soft-thresholding every coefficient is one elementwise operation::

    level 1 on an H x W image:   [ LL | LH ]    LL: low-pass along H and W (the next level's input)
                                 [ HL | HH ]    LH: low along H, high along W; HL: high along H,
                                                low along W; HH: high along both

With periodic extension and an orthonormal filter pair the analysis operator is an orthogonal
matrix for every even length (even shorter than the filter: the filter then wraps around), so
:func:`idwt2` is both the inverse and the adjoint of :func:`dwt2`. Each level is two products with
that matrix (stored dense: one GEMM per axis is far faster than strided filtering, on CPUs and GPUs
alike, at MRI sizes), so the transforms run on real or complex tensors, on any device, and are
differentiable.

Filter convention: ``a[k] = sum_n h[n] x[(2k + n) mod N]`` and ``d[k] = sum_n g[n] x[(2k + n) mod N]``
with ``g[n] = (-1)^n h[L - 1 - n]``.
"""

from __future__ import annotations

import math

import torch

# Scaling (low-pass) filters, normalised to sum(h^2) = 1 and sum(h) = sqrt(2). db4 is Daubechies'
# extremal-phase wavelet with 4 vanishing moments (8 taps), PyWavelets' "db4" reconstruction low-pass,
# here to full double precision (from the spectral factorisation; the 12-digit tables in circulation
# would make the transform orthogonal only to about 1e-12).
_SCALING_FILTERS: dict[str, tuple[float, ...]] = {
    "haar": (1 / math.sqrt(2), 1 / math.sqrt(2)),
    "db4": (
        0.23037781330889615,
        0.7148465705529148,
        0.6308807679298586,
        -0.02798376941685883,
        -0.18703481171909234,
        0.03084138183556067,
        0.03288301166688512,
        -0.010597401785069,
    ),
}

WAVELETS = tuple(_SCALING_FILTERS)


def wavelet_filters(
    wavelet: str, dtype: torch.dtype = torch.float64, device: torch.device | str | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The orthonormal filter pair ``(h, g)`` of ``wavelet``, each real ``(L,)``.

    Args:
        wavelet: one of :data:`WAVELETS` (``haar``, ``db4``).
        dtype: real dtype of the filters.
        device: device of the filters.
    """
    if wavelet not in _SCALING_FILTERS:
        raise ValueError(f"unknown wavelet {wavelet!r}; valid: {', '.join(WAVELETS)}")
    low = torch.tensor(_SCALING_FILTERS[wavelet], dtype=dtype, device=device)
    signs = torch.tensor([(-1.0) ** n for n in range(low.numel())], dtype=dtype, device=device)
    return low, signs * low.flip(0)


def analysis_matrix(
    n: int, wavelet: str, dtype: torch.dtype = torch.float64, device: torch.device | str | None = None
) -> torch.Tensor:
    """One level of the periodic 1-D transform as an orthogonal ``(n, n)`` real matrix.

    Rows ``0 .. n/2 - 1`` give the approximation ``a[k] = sum_j h[j] x[(2k + j) mod n]``, rows
    ``n/2 .. n - 1`` the detail (with ``g``). Filters longer than ``n`` wrap around more than once;
    the matrix stays orthogonal for every even ``n``.

    Args:
        n: signal length, even and positive.
        wavelet: ``haar`` or ``db4``.
    """
    if n < 2 or n % 2:
        raise ValueError(f"wavelet analysis needs an even length, got {n}")
    low, high = wavelet_filters(wavelet)
    half = n // 2
    rows = torch.arange(half)[:, None].expand(half, low.numel())
    cols = (2 * rows + torch.arange(low.numel())) % n
    # Built in float64 on the CPU, where accumulating wrapped-around taps is exact and deterministic.
    matrix = torch.zeros(n, n, dtype=torch.float64)
    matrix.index_put_((rows, cols), low.expand_as(cols), accumulate=True)
    matrix.index_put_((rows + half, cols), high.expand_as(cols), accumulate=True)
    return matrix.to(dtype=dtype, device=device)


def _left_multiply(matrix: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``matrix @ x`` over axis -2 for real or complex ``x`` ``(..., N, M)`` with a real matrix."""
    if not x.is_complex():
        return matrix @ x
    # Real and imaginary parts side by side as 2M real columns: one real GEMM instead of a complex one.
    pairs = torch.view_as_real(x)
    product = matrix @ pairs.reshape(*pairs.shape[:-2], -1)
    return torch.view_as_complex(product.reshape(pairs.shape[:-3] + (matrix.shape[0], x.shape[-1], 2)))


def _level(x: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, inverse: bool) -> torch.Tensor:
    """``R x C^T`` (analysis) or ``R^T x C`` (synthesis) on ``(..., H, W)``."""
    if inverse:
        rows, cols = rows.T, cols.T
    x = _left_multiply(cols, x.transpose(-1, -2)).transpose(-1, -2)
    return _left_multiply(rows, x)


def _check_input(x: torch.Tensor, levels: int) -> None:
    if levels < 1:
        raise ValueError(f"levels must be at least 1, got {levels}")
    if x.ndim < 2:
        raise ValueError(f"wavelet transforms need images (..., H, W), got shape {tuple(x.shape)}")
    h, w = x.shape[-2:]
    step = 2**levels
    if h % step or w % step:
        raise ValueError(
            f"image shape {tuple(x.shape)}: H={h} and W={w} must be divisible by 2**levels = {step} "
            f"for a {levels}-level wavelet transform"
        )


def _with_block(coeffs: torch.Tensor, block: torch.Tensor) -> torch.Tensor:
    """``coeffs`` with its top-left corner replaced by ``block`` (out of place, for autograd)."""
    h, w = block.shape[-2:]
    top = torch.cat((block, coeffs[..., :h, w:]), dim=-1)
    return torch.cat((top, coeffs[..., h:, :]), dim=-2)


def _level_matrices(
    shape: tuple[int, int], wavelet: str, levels: int, like: torch.Tensor
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``(rows, cols)`` analysis matrices of each level, the level-``l`` block being ``(H, W) / 2**l``."""
    cache: dict[int, torch.Tensor] = {}

    def matrix(n: int) -> torch.Tensor:
        if n not in cache:
            cache[n] = analysis_matrix(n, wavelet, like.real.dtype, like.device)
        return cache[n]

    return [(matrix(shape[0] >> level), matrix(shape[1] >> level)) for level in range(levels)]


def dwt2(x: torch.Tensor, wavelet: str = "db4", levels: int = 3) -> torch.Tensor:
    """Multi-level orthonormal 2-D wavelet transform, periodic boundaries.

    Args:
        x: real or complex ``(..., H, W)``, typically ``(B, H, W)``, with H and W divisible by
            ``2**levels``.
        wavelet: ``haar`` or ``db4``.
        levels: number of decomposition levels, at least 1.

    Returns:
        coefficients in the in-place layout (see the module docstring), same shape and dtype as ``x``.
    """
    _check_input(x, levels)
    matrices = _level_matrices(tuple(x.shape[-2:]), wavelet, levels, x)
    coeffs = _level(x, *matrices[0], inverse=False)
    for rows, cols in matrices[1:]:
        block = coeffs[..., : rows.shape[0], : cols.shape[0]]
        coeffs = _with_block(coeffs, _level(block, rows, cols, inverse=False))
    return coeffs


def idwt2(coeffs: torch.Tensor, wavelet: str = "db4", levels: int = 3) -> torch.Tensor:
    """Inverse (and adjoint) of :func:`dwt2` with the same ``wavelet`` and ``levels``.

    Args:
        coeffs: real or complex ``(..., H, W)`` in the in-place layout.

    Returns:
        the image ``(..., H, W)``.
    """
    _check_input(coeffs, levels)
    matrices = _level_matrices(tuple(coeffs.shape[-2:]), wavelet, levels, coeffs)
    for rows, cols in reversed(matrices[1:]):
        block = coeffs[..., : rows.shape[0], : cols.shape[0]]
        coeffs = _with_block(coeffs, _level(block, rows, cols, inverse=True))
    return _level(coeffs, *matrices[0], inverse=True)
