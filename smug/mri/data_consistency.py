"""MoDL's data-consistency step: ``x = (A^H A + lam I)^-1 (A^H y + lam z)``.

It is the proximal step of ``||A x - y||^2 + lam ||x - z||^2`` around the denoiser output ``z``.
Single-coil Cartesian data has an exact closed form in k-space, because ``F^H M F`` is diagonal in
k-space; SENSE data does not, and is solved with a batched conjugate gradient. Both are plain
differentiable torch code, so attacks can backpropagate through them.

The measurements enter only through the zero-filled image ``A^H y`` (for single-coil data
``F A^H y = M y``), so an image-domain perturbation of ``A^H y`` and a k-space perturbation of ``y``
go through the same code.
"""

from __future__ import annotations

from typing import Callable

import torch

from smug.mri.fftc import fft2c, ifft2c
from smug.mri.operators import broadcast_mask, normal_operator_fn


def closed_form_dc(
    z: torch.Tensor, zero_filled: torch.Tensor, mask: torch.Tensor, lam: torch.Tensor | float
) -> torch.Tensor:
    """Exact single-coil data consistency.

    With ``A = M F`` and ``F`` unitary, ``(A^H A + lam I)^-1 = F^H (M + lam)^-1 F``, so
    ``x = F^H [(M y + lam F z) / (M + lam)]``: sampled columns get a weighted average of the measurement
    and the denoiser's k-space, unsampled columns keep the denoiser's.

    Args:
        z: denoiser output, complex ``(B, H, W)``.
        zero_filled: ``A^H y``, complex ``(B, H, W)``.
        mask: column mask ``(W,)`` or ``(B, W)``.
        lam: regularisation weight, scalar or ``(B,)`` tensor, positive.

    Returns:
        complex ``(B, H, W)``.
    """
    m = broadcast_mask(mask, 3).to(z.real.dtype)
    lam = _as_batch(lam, z)
    measured = fft2c(zero_filled) * m
    return ifft2c((measured + lam * fft2c(z)) / (m + lam))


def conjugate_gradient(
    apply_matrix: Callable[[torch.Tensor], torch.Tensor],
    rhs: torch.Tensor,
    x0: torch.Tensor,
    max_iter: int = 10,
    tol: float = 1e-6,
    check_every: int = 8,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Batched conjugate gradient for Hermitian positive-definite systems, one system per sample.

    Each sample stops updating once ``||r|| <= tol * ||rhs||`` (its own relative residual); the others
    go on. Convergence is tracked in tensors, so the loop never waits on the device except for one
    "all converged?" check every ``check_every`` iterations; gradients flow through the iterations.

    Args:
        apply_matrix: ``x -> A x`` on complex ``(B, ...)``.
        rhs: complex ``(B, ...)``.
        x0: initial guess, like ``rhs`` (MoDL warm-starts at the denoiser output).
        max_iter: iteration cap.
        tol: relative residual tolerance.
        check_every: iterations between host-side early-exit checks (0 disables early exit).

    Returns:
        ``(x, iterations)``: the solution like ``rhs`` and the ``(B,)`` count of iterations each sample used.
    """

    def dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        # Re(a^H b) as a real product of the (re, im) views: half the work of a complex product.
        if a.is_complex():
            a, b = torch.view_as_real(a), torch.view_as_real(b)
        return (a * b).sum(tuple(range(1, a.ndim)))

    def per_sample(v: torch.Tensor) -> torch.Tensor:
        return v.reshape((-1,) + (1,) * (rhs.ndim - 1))

    x = x0
    r = rhs - apply_matrix(x)
    p = r
    rs = dot(r, r)
    threshold = (tol**2) * dot(rhs, rhs)
    iterations = torch.zeros(rhs.shape[0], dtype=torch.long, device=rhs.device)
    for it in range(max_iter):
        active = rs > threshold
        if check_every and it % check_every == 0 and not bool(active.any()):
            break
        ap = apply_matrix(p)
        # Converged samples divide by 1, not by a vanishing p^H A p: torch.where alone would still
        # send 0 * inf = NaN gradients through the branch it discards.
        alpha = torch.where(active, rs / torch.where(active, dot(p, ap), 1.0), 0.0)
        x = x + per_sample(alpha) * p
        r = r - per_sample(alpha) * ap
        rs_new = dot(r, r)
        beta = torch.where(active, rs_new / torch.where(active, rs, 1.0), 0.0)
        p = torch.where(per_sample(active), r + per_sample(beta) * p, p)
        rs = torch.where(active, rs_new, rs)
        iterations = iterations + active.long()
    return x, iterations


def cg_dc(
    z: torch.Tensor,
    zero_filled: torch.Tensor,
    mask: torch.Tensor,
    lam: torch.Tensor | float,
    sens_maps: torch.Tensor | None = None,
    max_iter: int = 10,
    tol: float = 1e-6,
) -> torch.Tensor:
    """Data consistency by conjugate gradient on ``(A^H A + lam I) x = A^H y + lam z``, warm-started at z.

    Args:
        z: complex ``(B, H, W)``.
        zero_filled: ``A^H y``, complex ``(B, H, W)``.
        mask: column mask ``(W,)`` or ``(B, W)``.
        lam: scalar or ``(B,)``.
        sens_maps: ``(B, C, H, W)`` or None for single-coil.

    Returns:
        complex ``(B, H, W)``.
    """
    lam = _as_batch(lam, z)
    rhs = zero_filled + lam * z

    normal = normal_operator_fn(mask, sens_maps, z.shape[-1])

    def apply_matrix(x: torch.Tensor) -> torch.Tensor:
        return normal(x) + lam * x

    x, _ = conjugate_gradient(apply_matrix, rhs, z, max_iter=max_iter, tol=tol)
    return x


def data_consistency(
    z: torch.Tensor,
    zero_filled: torch.Tensor,
    mask: torch.Tensor,
    lam: torch.Tensor | float,
    sens_maps: torch.Tensor | None = None,
    max_iter: int = 10,
    tol: float = 1e-6,
) -> torch.Tensor:
    """MoDL data consistency given the zero-filled image ``A^H y``: closed form for single-coil
    (``sens_maps=None``), CG for SENSE."""
    if sens_maps is None:
        return closed_form_dc(z, zero_filled, mask, lam)
    return cg_dc(z, zero_filled, mask, lam, sens_maps, max_iter=max_iter, tol=tol)


def _as_batch(lam: torch.Tensor | float, like: torch.Tensor) -> torch.Tensor:
    """Broadcast a scalar or ``(B,)`` weight against ``(B, H, W)``."""
    lam = torch.as_tensor(lam, dtype=like.real.dtype, device=like.device)
    return lam.reshape(-1, 1, 1) if lam.ndim == 1 else lam
