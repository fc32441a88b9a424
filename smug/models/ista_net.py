"""ISTA-Net+ (Zhang and Ghanem 2018) for MRI: unrolled ISTA with a learned nonlinear transform.

Each of the ``num_phases`` phases (weights not shared) takes the current image ``x``:

    r   = x - rho (A^H A x - A^H y)                      gradient step on ||A x - y||^2 / 2
    u   = D(r)                                           3x3 conv, 2 -> C channels
    x'  = r + G(F~(soft(F(u), theta)))                   F, F~: conv-ReLU-conv; G: 3x3 conv C -> 2

with ``rho`` and ``theta`` learned per phase, ``soft`` the soft-thresholding ``sign(v) max(|v| -
theta, 0)``, and complex images as two real channels. The symmetry constraint ``F~(F(u)) = u`` is
trained through :func:`symmetry_loss` on the residuals a forward pass records in an
:class:`ISTATrace`. ``A^H y`` is ``physics.zero_filled_image(y)``, so an image-domain perturbation of
it reaches the gradient step as it reaches MoDL's data consistency.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from smug.mri import MRIPhysics, channels_to_complex, complex_to_channels


@dataclass
class ISTATrace:
    """Per-phase symmetry residuals ``F~(F(u)) - u``, real ``(B, C, H, W)`` each."""

    symmetry: list[torch.Tensor] = field(default_factory=list)


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
        self, image: torch.Tensor, zero_filled: torch.Tensor, physics: MRIPhysics, trace: ISTATrace | None
    ) -> torch.Tensor:
        """``x -> x'`` (complex ``(B, H, W)``); ``zero_filled`` is ``A^H y``."""
        gradient_step = image - self.step * (physics.A_adjoint_A(image) - zero_filled)
        channels = complex_to_channels(gradient_step)
        features = self.to_features(channels)
        transformed = self.forward_transform(features)
        shrunk = torch.sign(transformed) * F.relu(transformed.abs() - self.threshold)
        correction = self.to_image(self.backward_transform(shrunk))
        if trace is not None:
            trace.symmetry.append(self.backward_transform(transformed) - features)
        return channels_to_complex(channels + correction)


class ISTANetPlus(nn.Module):
    """ISTA-Net+ behind the reconstructor interface.

    Args:
        num_phases: unrolled phases (the paper: 9).
        num_filters: channels of the learned transform (the paper: 32).
        step, threshold: initial ``rho`` and ``theta`` of every phase (the paper's code: 0.5, 0.01).
    """

    def __init__(
        self, num_phases: int = 9, num_filters: int = 32, step: float = 0.5, threshold: float = 0.01
    ):
        super().__init__()
        if num_phases < 1 or num_filters < 1:
            raise ValueError(
                f"ISTANetPlus needs num_phases >= 1 and num_filters >= 1, got {num_phases}, {num_filters}"
            )
        self.phases = nn.ModuleList([ISTAPhase(num_filters, step, threshold) for _ in range(num_phases)])

    def forward(
        self, kspace: torch.Tensor, physics: MRIPhysics, *, trace: ISTATrace | None = None
    ) -> torch.Tensor:
        """Measured k-space ``(B, C, H, W)`` to the complex image ``(B, H, W)``; ``trace`` collects
        the phases' symmetry residuals for :func:`symmetry_loss`."""
        zero_filled = physics.zero_filled_image(kspace)
        image = zero_filled
        for phase in self.phases:
            image = phase(image, zero_filled, physics, trace)
        return image


def symmetry_loss(trace: ISTATrace) -> torch.Tensor:
    """ISTA-Net+'s constraint loss: the mean over phases of ``mean((F~(F(u)) - u)^2)``."""
    if not trace.symmetry:
        raise ValueError("the trace holds no symmetry residuals: was it passed to an ISTA-Net+ forward?")
    return torch.stack([residual.pow(2).mean() for residual in trace.symmetry]).mean()
