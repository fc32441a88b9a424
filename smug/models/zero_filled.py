"""The zero-filled reconstruction ``A^H y``: the floor every method must beat."""

from __future__ import annotations

import torch
from torch import nn

from smug.mri import MRIPhysics


class ZeroFilled(nn.Module):
    """``f(y) = A^H y`` behind the reconstruction-model interface (no parameters)."""

    def forward(self, kspace: torch.Tensor, physics: MRIPhysics) -> torch.Tensor:
        """``A^H y`` of k-space ``(B, C, H, W)`` (or the image-domain perturbation of it the physics
        carries), complex ``(B, H, W)``."""
        return physics.zero_filled_image(kspace)
