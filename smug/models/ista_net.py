"""ISTA-Net+ (Zhang and Ghanem 2018) for MRI: unrolled ISTA with a learned nonlinear transform.

Each of the ``num_phases`` phases (weights not shared) takes the current image ``x``:

    r   = x - rho (A^H A x - A^H y)                      gradient step on ||A x - y||^2 / 2
    u   = D(r)                                           3x3 conv, 2 -> C channels
    x'  = r + G(F~(soft(F(u), theta)))                   F, F~: conv-ReLU-conv; G: 3x3 conv C -> 2

with ``rho`` and ``theta`` learned per phase, ``soft`` the soft-thresholding ``sign(v) max(|v| -
theta, 0)``, and complex images as two real channels. The symmetry constraint ``F~(F(u)) = u`` is
trained through :func:`symmetry_loss` on the residuals a forward pass records in an
:class:`smug.models.unrolled.UnrollTrace`. ``A^H y`` is ``physics.zero_filled_image(y)``, so an
image-domain perturbation of it reaches the gradient step as it reaches MoDL's data consistency.

SMUG on ISTA-Net+ smooths each phase's proximal step ``r -> x'`` (:meth:`ISTAPhase.proximal`), the
phase's learned denoiser.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

from smug.models.unrolled import Regularizer, SmoothedUnrolling, UnrollTrace
from smug.mri import MRIPhysics, channels_to_complex, complex_to_channels


class ISTAPhase(nn.Module):
    """One ISTA-Net+ phase on complex ``(B, H, W)`` images."""

    def __init__(self, num_filters: int, step: float, threshold: float):
        super().__init__()
        self.step = nn.Parameter(torch.tensor(float(step)))
        self.threshold = nn.Parameter(torch.tensor(float(threshold)))
        self.to_features = nn.Conv2d(2, num_filters, 3, padding=1, bias=False)
        self.forward_transform = nn.Sequential(
            nn.Conv2d(num_filters, num_filters, 3, padding=1, bias=False),
            nn.ReLU(),
            nn.Conv2d(num_filters, num_filters, 3, padding=1, bias=False),
        )
        self.backward_transform = nn.Sequential(
            nn.Conv2d(num_filters, num_filters, 3, padding=1, bias=False),
            nn.ReLU(),
            nn.Conv2d(num_filters, num_filters, 3, padding=1, bias=False),
        )
        self.to_image = nn.Conv2d(num_filters, 2, 3, padding=1, bias=False)

    def forward(
        self,
        image: torch.Tensor,
        zero_filled: torch.Tensor,
        physics: MRIPhysics,
        trace: UnrollTrace | None = None,
    ) -> torch.Tensor:
        """``x -> x'`` (complex ``(B, H, W)``): the gradient step, then the proximal step."""
        channels = complex_to_channels(self.gradient_step(image, zero_filled, physics))
        return channels_to_complex(self.proximal(channels, trace))

    def gradient_step(
        self, image: torch.Tensor, zero_filled: torch.Tensor, physics: MRIPhysics
    ) -> torch.Tensor:
        """``r = x - rho (A^H A x - A^H y)`` on complex ``(B, H, W)`` images; ``zero_filled`` is ``A^H y``."""
        return image - self.step * (physics.A_adjoint_A(image) - zero_filled)

    def proximal(self, channels: torch.Tensor, trace: UnrollTrace | None = None) -> torch.Tensor:
        """``r -> r + G(F~(soft(F(D r), theta)))`` on 2-channel images ``(N, 2, H, W)``; ``trace``
        collects the symmetry residual ``F~(F(u)) - u``."""
        features = self.to_features(channels)
        transformed = self.forward_transform(features)
        shrunk = torch.sign(transformed) * F.relu(transformed.abs() - self.threshold)
        correction = self.to_image(self.backward_transform(shrunk))
        if trace is not None:
            trace.symmetry.append(self.backward_transform(transformed) - features)
        return channels + correction


class ISTANetPlus(SmoothedUnrolling):
    """ISTA-Net+ behind the reconstructor interface.

    Args:
        num_phases: unrolled phases (the paper: 9).
        num_filters: channels of the learned transform (the paper: 32).
        step, threshold: initial ``rho`` and ``theta`` of every phase (the paper's code: 0.5, 0.01).
        symmetry_weight: weight of :func:`symmetry_loss` in training (the paper's gamma: 0.01).
        smoothing, sigma, num_samples, weight_encoder, weight_scores, weight_normalisation: the
            smoothing of every phase's proximal step (:class:`smug.models.unrolled.SmoothedUnrolling`).
    """

    def __init__(
        self,
        num_phases: int = 9,
        num_filters: int = 32,
        step: float = 0.5,
        threshold: float = 0.01,
        symmetry_weight: float = 0.01,
        smoothing: str = "none",
        sigma: float = 0.01,
        num_samples: int = 10,
        weight_encoder: nn.Module | None = None,
        weight_scores: str = "denoised",
        weight_normalisation: str = "sum",
    ):
        super().__init__()
        if num_phases < 1 or num_filters < 1:
            raise ValueError(
                f"ISTANetPlus needs num_phases >= 1 and num_filters >= 1, got {num_phases}, {num_filters}"
            )
        if not symmetry_weight >= 0:
            raise ValueError(f"ISTANetPlus: symmetry_weight must be >= 0, got {symmetry_weight}")
        self.phases = nn.ModuleList([ISTAPhase(num_filters, step, threshold) for _ in range(num_phases)])
        self.symmetry_weight = float(symmetry_weight)
        self.init_smoothing(
            smoothing, sigma, num_samples, weight_encoder, weight_scores, weight_normalisation
        )

    def regularizer(self, step: int) -> Regularizer:
        """Phase ``step``'s proximal step on 2-channel images."""
        return self.phases[step].proximal

    def forward(
        self,
        kspace: torch.Tensor,
        physics: MRIPhysics,
        *,
        generator: torch.Generator | None = None,
        trace: UnrollTrace | None = None,
    ) -> torch.Tensor:
        """Measured k-space ``(B, C, H, W)`` to the complex image ``(B, H, W)``; ``generator`` is
        the smoothing noise's source, ``trace`` collects each phase's regulariser inputs and outputs
        and its symmetry residuals (:func:`symmetry_loss`)."""
        zero_filled = physics.zero_filled_image(kspace)
        image = zero_filled
        for step, phase in enumerate(self.phases):

            def body(state, generator, trace, step=step, phase=phase):
                # The phase's symmetry residuals, one per chunk of smoothing draws, make one record.
                residuals = UnrollTrace() if trace is not None else None
                proximal = functools.partial(phase.proximal, trace=residuals)
                moved = phase.gradient_step(state[0], zero_filled, physics)
                out = self.regularize(step, moved, generator, trace, proximal)
                if trace is not None:
                    trace.symmetry.append(torch.cat(residuals.symmetry))
                    # a chunk recomputed in the backward pass records nothing again
                    residuals.symmetry = _Discarded()
                return (out,)

            (image,) = self.unroll(body, (image,), generator, trace)
        return image

    constrained = True

    def constraint_loss(self, trace: UnrollTrace) -> torch.Tensor:
        """``symmetry_weight`` times :func:`symmetry_loss`."""
        return self.symmetry_weight * symmetry_loss(trace)


class _Discarded(list):
    """A list that keeps nothing appended to it."""

    def append(self, item) -> None:
        pass


def symmetry_loss(trace: UnrollTrace) -> torch.Tensor:
    """ISTA-Net+'s constraint loss: the mean over phases of ``mean((F~(F(u)) - u)^2)``."""
    if not trace.symmetry:
        raise ValueError("the trace holds no symmetry residuals: was it passed to an ISTA-Net+ forward?")
    return torch.stack([residual.pow(2).mean() for residual in trace.symmetry]).mean()
