"""MoDL and its smoothed variants: SMUG, Weighted SMUG and RS-E2E.

MoDL (Aggarwal et al.) alternates a learned denoiser ``D``, shared by all unrolls, with the
data-consistency step ``x = (A^H A + lam I)^-1 (A^H y + lam D(x))``. SMUG replaces ``D`` at every
unroll by its randomized smoothing; Weighted SMUG learns the average's weights; RS-E2E instead
smooths the whole end-to-end network over noisy copies of the measurements.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from smug.models.smoothing import SmoothingTrace, complex_gaussian, denoise_complex, smoothed_denoise
from smug.mri import MRIPhysics


@dataclass
class UnrollTrace:
    """Intermediate results of one forward pass, for the unrolled stability loss.

    Attributes:
        inputs: the image entering each unroll's denoiser, complex ``(B, H, W)`` each.
        smoothing: per-unroll :class:`SmoothingTrace` (empty for vanilla MoDL).
        denoised: per-unroll denoiser outputs, complex ``(M, B, H, W)``: every noisy copy's for a
            smoothed model, ``M = 1`` for vanilla MoDL (what the bounded-output assumption bounds).
    """

    inputs: list[torch.Tensor] = field(default_factory=list)
    smoothing: list[SmoothingTrace] = field(default_factory=list)
    denoised: list[torch.Tensor] = field(default_factory=list)


class MoDL(nn.Module):
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

    SMOOTHING = ("none", "smug", "weighted")

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
        if smoothing not in self.SMOOTHING:
            raise ValueError(f"unknown smoothing {smoothing!r}; valid: {', '.join(self.SMOOTHING)}")
        if smoothing == "weighted" and weight_encoder is None:
            raise ValueError("smoothing='weighted' needs a weight_encoder")
        if num_unrolls < 0 or num_samples < 1 or not lam > 0:
            raise ValueError(
                f"need num_unrolls >= 0, num_samples >= 1, lam > 0; got {num_unrolls}, {num_samples}, {lam}"
            )
        if output_bound is not None and not output_bound > 0:
            raise ValueError(f"output_bound must be positive or None, got {output_bound}")
        if learn_lam and not 0 < lam_floor < lam:
            raise ValueError(f"a learned lam needs 0 < lam_floor < lam; got lam_floor={lam_floor}, lam={lam}")
        self.denoiser = denoiser
        self.weight_encoder = weight_encoder if smoothing == "weighted" else None
        self.num_unrolls = num_unrolls
        self.smoothing = smoothing
        self.sigma = sigma
        self.num_samples = num_samples
        self.cg_max_iter = cg_max_iter
        self.cg_tol = cg_tol
        self.weight_scores = weight_scores
        self.weight_normalisation = weight_normalisation
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

    @property
    def randomised(self) -> bool:
        """Whether the output depends on random draws (attacks then average over them, EOT)."""
        return self.smoothing != "none"

    def denoise_channels(self, image: torch.Tensor) -> torch.Tensor:
        """The denoiser on 2-channel images ``(N, 2, H, W)``, its output clipped to the bound if any."""
        out = self.denoiser(image)
        return out if self.output_bound is None else out.clamp(-self.output_bound, self.output_bound)

    def regularize(
        self, image: torch.Tensor, generator: torch.Generator | None
    ) -> tuple[torch.Tensor, SmoothingTrace | None]:
        """The prior step of one unroll: ``D(x)`` or its (weighted) randomized smoothing."""
        if self.smoothing == "none":
            return denoise_complex(self.denoise_channels, image), None
        return smoothed_denoise(
            self.denoise_channels,
            image,
            self.sigma,
            self.num_samples,
            generator,
            self.weight_encoder,
            weight_scores=self.weight_scores,
            weight_normalisation=self.weight_normalisation,
        )

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
        for _ in range(n):
            z, smoothing_trace = self.regularize(x, generator)
            if trace is not None:
                trace.inputs.append(x)
                if smoothing_trace is not None:
                    trace.smoothing.append(smoothing_trace)
                trace.denoised.append(
                    z.unsqueeze(0) if smoothing_trace is None else smoothing_trace.noisy_outputs
                )
            x = physics.data_consistency(z, aty, self.lam, max_iter=self.cg_max_iter, tol=self.cg_tol)
        return x


class RSE2E(nn.Module):
    """Randomized smoothing of the whole end-to-end network (RS-E2E).

    ``f(y) = mean_j MoDL(y + M eta_j)``: complex Gaussian noise on the sampled k-space entries, the
    M noisy copies reconstructed in one batched pass.

    Args:
        modl: the network being smoothed (normally a vanilla MoDL).
        sigma: k-space noise standard deviation (real and imaginary parts each).
        num_samples: M.
    """

    def __init__(self, modl: MoDL, sigma: float = 0.01, num_samples: int = 10):
        super().__init__()
        if num_samples < 1:
            raise ValueError(f"num_samples must be at least 1, got {num_samples}")
        self.modl = modl
        self.sigma = sigma
        self.num_samples = num_samples

    # Every forward pass draws fresh k-space noise (attacks average over the draws, EOT).
    randomised = True

    def forward(
        self,
        kspace: torch.Tensor,
        physics: MRIPhysics,
        *,
        generator: torch.Generator | None = None,
        trace: UnrollTrace | None = None,
        num_unrolls: int | None = None,
    ) -> torch.Tensor:
        """As :meth:`MoDL.forward`; ``trace`` records the smoothed MoDL's passes, the M noisy copies
        of each slice side by side in the batch dimension.

        The k-space noise reaches the network as ``A^H (M eta)`` added to the zero-filled image,
        which is exactly what noisy measurements would give, so image-domain inputs work too.
        """
        m = self.num_samples
        b = kspace.shape[0]
        aty = physics.zero_filled_image(kspace)
        noise = complex_gaussian((m * b, *kspace.shape[1:]), self.sigma, kspace, generator)
        copies = physics.with_zero_filled(None).repeat(m)  # the image is replaced below: no need to copy it
        noisy_aty = aty.repeat(m, 1, 1) + copies.A_adjoint(noise)
        out = self.modl(
            kspace.repeat(m, 1, 1, 1),
            copies.with_zero_filled(noisy_aty),
            trace=trace,
            num_unrolls=num_unrolls,
        )
        return out.reshape(m, b, *out.shape[1:]).mean(0)


def without_smoothing(model: nn.Module) -> nn.Module:
    """The network a smoothed model smooths (the SMUG conference attack's surrogate).

    SMUG and Weighted SMUG become the same unrolled network with plain denoising (the weights are
    shared, not copied); RS-E2E gives the MoDL it averages; any other model is returned as it is.
    """
    if isinstance(model, RSE2E):
        return model.modl
    if isinstance(model, MoDL) and model.smoothing != "none":
        plain = copy.copy(model)  # a shallow copy shares every parameter and buffer
        plain.smoothing = "none"
        return plain
    return model


def _inverse_softplus(value: float) -> float:
    """``w`` with ``softplus(w) = value > 0``, computed stably for large values."""
    return value + math.log(-math.expm1(-value))
