"""DnCNN-style residual denoiser, the regulariser network of the original MoDL.

Aggarwal, Mani and Jacob, "MoDL: Model-Based Deep Learning Architecture for Inverse Problems",
IEEE TMI 2019: five 3x3 convolutions with 64 filters, batch normalisation and ReLU after all but
the last, and a skip connection so the layers estimate the noise/alias to remove.
"""

from __future__ import annotations

import torch
from torch import nn


class DnCNN(nn.Module):
    """Residual CNN denoiser: ``(B, in_chans, H, W) -> (B, out_chans, H, W)``, any ``H, W``.

    Args:
        in_chans: image channels (2: real and imaginary parts).
        out_chans: output channels; must equal ``in_chans`` because of the skip connection (kept
            as an argument so every denoiser of :mod:`smug.models.denoisers` takes the same ones).
        num_chans: feature channels of the hidden layers.
        num_layers: number of 3x3 convolutions, at least 2.

    Batch normalisation couples the items of a batch in training mode only; in eval mode each item
    is processed independently.
    """

    def __init__(self, in_chans: int = 2, out_chans: int = 2, num_chans: int = 64, num_layers: int = 5):
        super().__init__()
        if in_chans < 1 or num_chans < 1:
            raise ValueError(f"DnCNN: in_chans and num_chans must be positive, got {in_chans}, {num_chans}")
        if out_chans != in_chans:
            raise ValueError(f"DnCNN is residual: out_chans ({out_chans}) must equal in_chans ({in_chans})")
        if num_layers < 2:
            raise ValueError(f"DnCNN: num_layers must be at least 2, got {num_layers}")
        self.in_chans = in_chans

        layers: list[nn.Module] = []
        chans = in_chans
        for _ in range(num_layers - 1):
            # the bias would be cancelled by the batch norm's mean subtraction
            layers += [
                nn.Conv2d(chans, num_chans, 3, padding=1, bias=False),
                nn.BatchNorm2d(num_chans),
                nn.ReLU(inplace=True),
            ]
            chans = num_chans
        self.body = nn.Sequential(*layers)
        self.last = nn.Conv2d(chans, in_chans, 3, padding=1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """``(B, in_chans, H, W) -> (B, out_chans, H, W)``."""
        if image.ndim != 4 or image.shape[1] != self.in_chans:
            raise ValueError(
                f"DnCNN expects a (B, {self.in_chans}, H, W) tensor, got shape {tuple(image.shape)}"
            )
        return image + self.last(self.body(image))
