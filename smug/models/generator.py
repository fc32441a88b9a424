"""DCGAN-style perturbation generator for generator-based adversarial training.

Raj, Bresler and Li ("Improving robustness of deep-learning-based image reconstruction", ICML
2020) and the seed report "Robustness of Deep Learning in MRI Reconstruction" train the
reconstructor against a network ``G`` that maps a latent code to a worst-case input perturbation,
instead of running an iterative attack per sample. ``G`` follows DCGAN (Radford et al., 2016):
transposed convolutions that double the spatial size, BatchNorm and a non-linearity (PReLU here, as
the report), and a tanh output.

Arbitrary image sizes: the first transposed convolution expands the 1x1 latent to a
``ceil(H / 2^n) x ceil(W / 2^n)`` map, ``n`` stride-2 stages double it, and the result is
centre-cropped to ``H x W`` (nothing is cropped when ``2^n`` divides both; 320 = 10 * 2^5).
Cropping keeps every output pixel the product of the same kind of transposed-convolution
stencil, which interpolation would blur.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from smug.mri import center_crop


class PerturbationGenerator(nn.Module):
    """``G: z (B, latent_dim) -> scale * tanh(...)`` of shape ``(B, out_chans, H, W)``.

    Args:
        image_shape: ``(H, W)`` of the perturbation.
        latent_dim: size of the latent code (report: 100).
        out_chans: 1 (a real perturbation of the magnitude / real image) or 2 (real and imaginary
            parts of a complex perturbation).
        features: channels of the last hidden stage; each earlier stage has twice as many, up to
            ``max_features`` (DCGAN's ``ngf``).
        max_features: cap on the channels of the early stages (keeps the first layer small).
        num_upsamples: number of stride-2 stages ``n``.
        output_scale: initial value of the factor multiplying the tanh output (bounds the
            perturbation's entries by its absolute value).
        learn_scale: make the output scale a trainable parameter (the hinge penalty then keeps the
            perturbation's energy in check) or keep it fixed.
    """

    def __init__(
        self,
        image_shape: tuple[int, int],
        latent_dim: int = 100,
        out_chans: int = 1,
        features: int = 64,
        max_features: int = 512,
        num_upsamples: int = 5,
        output_scale: float = 1.0,
        learn_scale: bool = False,
    ):
        super().__init__()
        height, width = (int(s) for s in image_shape)
        if out_chans not in (1, 2):
            raise ValueError(f"out_chans must be 1 (real) or 2 (complex), got {out_chans}")
        if latent_dim < 1 or features < 1 or max_features < 1 or num_upsamples < 1:
            raise ValueError(
                "latent_dim, features, max_features and num_upsamples must be positive, got "
                f"{latent_dim}, {features}, {max_features}, {num_upsamples}"
            )
        if height < 1 or width < 1:
            raise ValueError(f"image_shape must be positive, got {(height, width)}")
        factor = 2**num_upsamples
        base = (math.ceil(height / factor), math.ceil(width / factor))
        if base[0] * base[1] < 2:
            # BatchNorm on a single 1x1 map of a batch of one has no variance to normalise by
            raise ValueError(
                f"num_upsamples={num_upsamples} is too many for image_shape {(height, width)}: the first "
                f"feature map would be {base[0]}x{base[1]}; use fewer upsampling stages"
            )
        self.image_shape = (height, width)
        self.latent_dim = latent_dim
        self.out_chans = out_chans

        widths = [min(features * 2 ** (num_upsamples - 1 - i), max_features) for i in range(num_upsamples)]
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(latent_dim, widths[0], kernel_size=base, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.PReLU(widths[0]),
        ]
        for in_width, out_width in zip(widths[:-1], widths[1:]):
            layers += [
                nn.ConvTranspose2d(in_width, out_width, kernel_size=4, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(out_width),
                nn.PReLU(out_width),
            ]
        layers += [nn.ConvTranspose2d(widths[-1], out_chans, kernel_size=4, stride=2, padding=1), nn.Tanh()]
        self.layers = nn.Sequential(*layers)

        scale = torch.tensor(float(output_scale))
        if learn_scale:
            self.output_scale = nn.Parameter(scale)
        else:
            self.register_buffer("output_scale", scale)

    def sample_latent(self, batch: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Standard normal latent codes ``(batch, latent_dim)`` on the generator's device."""
        weight = self.layers[0].weight
        return torch.randn(
            (batch, self.latent_dim), generator=generator, device=weight.device, dtype=weight.dtype
        )

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        """``(B, latent_dim) -> (B, out_chans, H, W)``, entries in ``[-|scale|, |scale|]``."""
        if latent.ndim != 2 or latent.shape[1] != self.latent_dim:
            raise ValueError(f"latent must be (B, {self.latent_dim}), got shape {tuple(latent.shape)}")
        out = self.layers(latent[:, :, None, None])
        return self.output_scale * center_crop(out, self.image_shape)
