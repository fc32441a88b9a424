"""The zero-filled reconstruction ``A^H y``: the floor every method must beat."""

from __future__ import annotations

import torch
from torch import nn

from smug.mri import adjoint_operator


class ZeroFilled(nn.Module):
    """``f(y) = A^H y`` with the shared reconstruction-model call signature (no parameters)."""

    def forward(
        self,
        kspace: torch.Tensor,
        mask: torch.Tensor,
        sens_maps: torch.Tensor | None = None,
        num_unrolls: int | None = None,
        generator: torch.Generator | None = None,
        trace: object | None = None,
        zero_filled: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return adjoint_operator(kspace, mask, sens_maps) if zero_filled is None else zero_filled
