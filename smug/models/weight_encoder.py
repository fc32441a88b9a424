"""Weighted SMUG's sample scorer: one weight in (0, 1) per noisy copy of the image.

Weighted SMUG replaces the plain average of the denoised noisy copies by
``sum_j w_j D(x + eta_j) / sum_j w_j``; this small CNN produces the ``w_j``, scoring either the
denoised copies or the noisy inputs (:func:`smug.models.smoothing.smoothed_denoise`).
"""

from __future__ import annotations

import torch
from torch import nn


class WeightEncoder(nn.Module):
    """Scores images: ``(B, in_chans, H, W) -> (B,)`` with values in (0, 1).

    Args:
        in_chans: input channels (2: real and imaginary parts).
        num_chans: feature channels of every block.
        num_blocks: number of [3x3 conv without bias, batch norm, ReLU] blocks.

    Batch normalisation couples the items of a batch in training mode; in eval mode each item is
    scored independently.
    """

    def __init__(self, in_chans: int = 2, num_chans: int = 16, num_blocks: int = 5):
        super().__init__()
        if in_chans < 1 or num_chans < 1:
            raise ValueError(
                f"WeightEncoder: in_chans and num_chans must be positive, got {in_chans}, {num_chans}"
            )
        if num_blocks < 1:
            raise ValueError(f"WeightEncoder: num_blocks must be at least 1, got {num_blocks}")
        self.in_chans = in_chans

        layers: list[nn.Module] = []
        chans = in_chans
        for _ in range(num_blocks):
            layers += [
                nn.Conv2d(chans, num_chans, 3, padding=1, bias=False),
                nn.BatchNorm2d(num_chans),
                nn.ReLU(inplace=True),
            ]
            chans = num_chans
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.score = nn.Linear(num_chans, 1)

    def logits(self, image: torch.Tensor) -> torch.Tensor:
        """``(B, in_chans, H, W) -> (B,)`` unbounded scores (the weights before the sigmoid)."""
        if image.ndim != 4 or image.shape[1] != self.in_chans:
            raise ValueError(
                f"WeightEncoder expects a (B, {self.in_chans}, H, W) tensor, got shape {tuple(image.shape)}"
            )
        pooled = self.pool(self.features(image)).flatten(1)
        return self.score(pooled).squeeze(1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """``(B, in_chans, H, W) -> (B,)`` weights in (0, 1)."""
        return torch.sigmoid(self.logits(image))
