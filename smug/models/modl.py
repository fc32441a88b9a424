"""MoDL and its smoothed variants: SMUG, Weighted SMUG and RS-E2E.

MoDL (Aggarwal et al.) alternates a learned denoiser ``D``, shared by all unrolls, with the
data-consistency step ``x = (A^H A + lam I)^-1 (A^H y + lam D(x))``. SMUG replaces ``D`` at every
unroll by its randomized smoothing; Weighted SMUG learns the average's weights; RS-E2E instead
smooths the whole end-to-end network over noisy copies of the measurements.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from smug.models.reconstruct import call_options
from smug.models.smoothing import complex_gaussian, refuse_chunked_batch_statistics
from smug.models.unrolled import Regularizer, SmoothedUnrolling, UnrollTrace
from smug.mri import MRIPhysics, apply_column_mask


class MoDL(SmoothedUnrolling):
    """Unrolled MoDL with an optional smoothed denoiser (SMUG / Weighted SMUG).

    Args:
        denoiser: 2-channel network shared across unrolls.
        num_unrolls: default number of unrolls N (a forward call may override it).
        lam: initial data-consistency weight, positive.
        learn_lam: train ``lam`` (original MoDL) or keep it fixed (SMUG code: 1). A learned ``lam``
            is ``lam_floor + softplus(w)`` with ``w`` the trained parameter, so it stays above the
            floor whatever the optimiser does and ``A^H A + lam I`` stays positive definite.
        lam_floor: lower bound of a learned ``lam``; ``A^H A + lam I`` then has a condition number
            of at most ``(||A||^2 + lam_floor) / lam_floor`` and CG keeps converging.
        smoothing: "none" (MoDL), "smug" or "weighted" (Weighted SMUG).
        sigma: smoothing noise standard deviation.
        num_samples: smoothing draws M per unroll.
        weight_encoder: Weighted SMUG's scorer (required for ``smoothing="weighted"``).
        weight_scores, weight_normalisation: how Weighted SMUG weighs its samples
            (:func:`smug.models.smoothing.smoothed_denoise`).
        cg_max_iter, cg_tol: conjugate-gradient settings for multicoil data consistency.
        output_bound: None, or a bound ``b`` on the denoiser's output: its real and imaginary parts
            are clipped to ``[-b, b]``, so ``||D(x)|| <= b sqrt(2 H W)`` whatever the input (the
            bounded-output assumption of SMUG's robustness theorem, made true by construction).
    """

    # One denoiser serves every unroll.
    shared_regularizer = True

    def __init__(
        self,
        denoiser: nn.Module,
        num_unrolls: int = 8,
        lam: float = 1.0,
        learn_lam: bool = False,
        smoothing: str = "none",
        sigma: float = 0.01,
        num_samples: int = 10,
        weight_encoder: nn.Module | None = None,
        cg_max_iter: int = 10,
        cg_tol: float = 1e-6,
        lam_floor: float = 0.01,
        weight_scores: str = "denoised",
        weight_normalisation: str = "sum",
        output_bound: float | None = None,
    ):
        super().__init__()
        if num_unrolls < 0 or not lam > 0:
            raise ValueError(f"need num_unrolls >= 0 and lam > 0; got {num_unrolls}, {lam}")
        if output_bound is not None and not output_bound > 0:
            raise ValueError(f"output_bound must be positive or None, got {output_bound}")
        if learn_lam and not 0 < lam_floor < lam:
            raise ValueError(f"a learned lam needs 0 < lam_floor < lam; got lam_floor={lam_floor}, lam={lam}")
        self.denoiser = denoiser
        self.init_smoothing(
            smoothing, sigma, num_samples, weight_encoder, weight_scores, weight_normalisation
        )
        self.num_unrolls = num_unrolls
        self.cg_max_iter = cg_max_iter
        self.cg_tol = cg_tol
        self.output_bound = None if output_bound is None else float(output_bound)
        self.learn_lam = learn_lam
        self.lam_floor = float(lam_floor)
        if learn_lam:
            self.lam_offset = nn.Parameter(torch.tensor(_inverse_softplus(lam - lam_floor)))
        else:
            self.register_buffer("lam_fixed", torch.tensor(float(lam)))

    @property
    def lam(self) -> torch.Tensor:
        """The data-consistency weight, a positive scalar tensor (differentiable when learned)."""
        if self.learn_lam:
            return self.lam_floor + F.softplus(self.lam_offset)
        return self.lam_fixed

    def denoise_channels(self, image: torch.Tensor) -> torch.Tensor:
        """The denoiser on 2-channel images ``(N, 2, H, W)``, its output clipped to the bound if any."""
        out = self.denoiser(image)
        return out if self.output_bound is None else out.clamp(-self.output_bound, self.output_bound)

    def regularizer(self, step: int) -> Regularizer:
        """The shared denoiser (every unroll's)."""
        return self.denoise_channels

    def forward(
        self,
        kspace: torch.Tensor,
        physics: MRIPhysics,
        *,
        generator: torch.Generator | None = None,
        trace: UnrollTrace | None = None,
        num_unrolls: int | None = None,
    ) -> torch.Tensor:
        """Reconstruct from undersampled k-space.

        Args:
            kspace: measured k-space ``y``, complex ``(B, C, H, W)`` (``C = 1`` single-coil).
            physics: the batch's operator; the measurements enter MoDL only through
                ``physics.zero_filled_image(y)`` (``A^H y``, or its image-domain perturbation).
            generator: smoothing noise source; fresh noise is drawn at every unroll.
            trace: if given, filled with the intermediates the stability loss needs.
            num_unrolls: overrides the trained N (0 returns the zero-filled image).

        Returns:
            complex ``(B, H, W)``.
        """
        n = self.num_unrolls if num_unrolls is None else num_unrolls
        aty = physics.zero_filled_image(kspace)
        x = aty
        for step in range(n):

            def body(state, generator, trace, step=step):
                z = self.regularize(step, state[0], generator, trace)
                dc = physics.data_consistency
                return (
                    self.checkpoint_rest(dc, z, aty, self.lam, max_iter=self.cg_max_iter, tol=self.cg_tol),
                )

            (x,) = self.unroll(body, (x,), generator, trace)
        return x


class RSE2E(nn.Module):
    """Randomized smoothing of the whole end-to-end network (RS-E2E).

    ``f(y) = mean_j g(y + M eta_j)``: complex Gaussian noise on the sampled k-space entries, the
    M noisy copies reconstructed in one batched pass.

    Args:
        modl: the network being smoothed: a vanilla MoDL, or another unrolled backbone (E2E-VarNet,
            ISTA-Net+); the attribute keeps MoDL's name so that saved weights keep their keys.
        sigma: k-space noise standard deviation (real and imaginary parts each).
        num_samples: M.
    """

    def __init__(self, modl: nn.Module, sigma: float = 0.01, num_samples: int = 10):
        super().__init__()
        if num_samples < 1:
            raise ValueError(f"num_samples must be at least 1, got {num_samples}")
        self.modl = modl
        self.sigma = sigma
        self.num_samples = num_samples
        # reconstruct the M noisy copies this many at a time (smug.models.set_memory); None: all at once
        self.sample_chunk: int | None = None

    # Every forward pass draws fresh k-space noise (attacks average over the draws, EOT).
    randomised = True

    @property
    def smoothed_network(self) -> nn.Module:
        """The network whose outputs are averaged (the conference attack's surrogate)."""
        return self.modl

    def forward(
        self,
        kspace: torch.Tensor,
        physics: MRIPhysics,
        *,
        generator: torch.Generator | None = None,
        trace: UnrollTrace | None = None,
        num_unrolls: int | None = None,
    ) -> torch.Tensor:
        """As :meth:`MoDL.forward`; ``trace`` records the smoothed network's passes, the M noisy
        copies of each slice side by side in the batch dimension.

        The copies get the noisy k-space ``y + M eta`` and, as their zero-filled image, ``A^H y``
        (or its image-domain perturbation) plus ``A^H (M eta)``, which is exactly what the noisy
        measurements would give: image-domain networks read the one, k-space networks the other,
        and image-domain attacks reach both.
        """
        m = self.num_samples
        b = kspace.shape[0]
        aty = physics.zero_filled_image(kspace)
        noise = complex_gaussian((m * b, *kspace.shape[1:]), self.sigma, kspace, generator)
        copies = physics.with_zero_filled(None).repeat(m)  # the image is replaced below: no need to copy it
        noisy_aty = aty.repeat(m, 1, 1) + copies.A_adjoint(noise)
        options = call_options(self.modl, generator, trace, num_unrolls)
        noisy_kspace = kspace.repeat(m, 1, 1, 1) + apply_column_mask(noise, copies.mask)
        if self.sample_chunk is None or self.sample_chunk >= m:
            out = self.modl(noisy_kspace, copies.with_zero_filled(noisy_aty), **options)
            return out.reshape(m, b, *out.shape[1:]).mean(0)
        if trace is not None:
            raise ValueError(
                "memory.sample_chunk: RS-E2E records no trace of chunked copies; use sample_chunk: null"
            )
        refuse_chunked_batch_statistics(self.modl, "the network RS-E2E smooths")
        # The copies are copy-major (copy j of slice i at row j * b + i), so a chunk of copies is a
        # run of rows. Each chunk's graph is its own: with the network's unrolls checkpointed, memory
        # holds one chunk's unroll at a time; otherwise each chunk is recomputed in the backward pass
        # (the network draws no noise: its copies' noise is drawn above), one chunk's at a time.
        recompute = torch.is_grad_enabled() and not getattr(self.modl, "checkpoint_unrolls", False)
        total = 0
        for first in range(0, m, self.sample_chunk):
            count = min(self.sample_chunk, m - first)
            rows = slice(first * b, (first + count) * b)
            chunk_physics = physics.with_zero_filled(None).repeat(count).with_zero_filled(noisy_aty[rows])
            if recompute:
                out = checkpoint(self.modl, noisy_kspace[rows], chunk_physics, use_reentrant=False, **options)
            else:
                out = self.modl(noisy_kspace[rows], chunk_physics, **options)
            total = total + out.reshape(count, b, *out.shape[1:]).sum(0)
        return total / m


def _inverse_softplus(value: float) -> float:
    """``w`` with ``softplus(w) = value > 0``, computed stably for large values."""
    return value + math.log(-math.expm1(-value))
