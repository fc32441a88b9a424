"""A diffusion prior for reconstruction: a noise-conditional denoiser trained by denoising score
matching, sampled with data consistency at every step: the ``diffusion`` method of the journal
version's comparison (``baselines.diffusion``).

The denoiser ``D(x, sigma)`` estimates the clean image from ``x = x_0 + sigma n``; by Tweedie's formula
its score is ``(D(x, sigma) - x) / sigma^2``. It is ``x + sigma F(x, log sigma)`` with ``F`` a U-Net
on the real and imaginary parts and a constant ``log sigma`` channel, so that denoising score matching
is the noise-prediction loss ``||F + n||^2`` (:func:`score_matching_loss`).

The sampler (:class:`DiffusionReconstructor`) walks a geometric ladder of noise levels from
``sigma_max`` to ``sigma_min``: at each level it denoises, enforces the measurements with
``physics.data_consistency`` (CG for multicoil data, as MoDL's), and re-noises to the next level, the
decomposed diffusion sampler's alternation with a DDIM-like fresh draw; its output is the last
data-consistent estimate.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from smug.models.smoothing import complex_gaussian
from smug.models.unet import UNet
from smug.mri import MRIPhysics, channels_to_complex, complex_to_channels


class NoiseConditionalDenoiser(nn.Module):
    """``D(x, sigma) = x + sigma F(x, log sigma)`` on complex ``(B, H, W)`` images.

    Args:
        chans, num_pool_layers: the U-Net ``F`` (3 channels in: real, imaginary, ``log sigma``).
    """

    def __init__(self, chans: int = 32, num_pool_layers: int = 3):
        super().__init__()
        self.unet = UNet(3, 2, chans, num_pool_layers)

    def forward(self, image: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """``image`` complex ``(B, H, W)`` (H, W multiples of ``2**num_pool_layers``), ``sigma`` ``(B,)``
        positive; returns complex ``(B, H, W)``."""
        channels = complex_to_channels(image)
        level = torch.log(sigma).to(channels.dtype)[:, None, None, None].expand(-1, 1, *channels.shape[-2:])
        correction = self.unet(torch.cat([channels, level], dim=1))
        return image + sigma[:, None, None].to(image.real.dtype) * channels_to_complex(correction)


def noise_levels(sigma_max: float, sigma_min: float, steps: int) -> list[float]:
    """``steps`` geometrically spaced levels from ``sigma_max`` down to ``sigma_min``."""
    if steps < 1 or not 0 < sigma_min <= sigma_max:
        raise ValueError(
            f"need steps >= 1 and 0 < sigma_min <= sigma_max; got {steps}, {sigma_min}, {sigma_max}"
        )
    if steps == 1:
        return [float(sigma_min)]
    ratio = math.log(sigma_min / sigma_max) / (steps - 1)
    return [float(sigma_max * math.exp(ratio * i)) for i in range(steps)]


def score_matching_loss(
    denoiser: NoiseConditionalDenoiser,
    images: torch.Tensor,
    generator: torch.Generator | None,
    sigma_min: float,
    sigma_max: float,
) -> torch.Tensor:
    """Denoising score matching on clean complex ``(B, H, W)`` images: each image gets its own level
    drawn log-uniformly from ``[sigma_min, sigma_max]``, and the loss is ``mean |D(x + sigma n) - x|^2
    / sigma^2`` over real and imaginary parts (the noise-prediction loss)."""
    batch = images.shape[0]
    u = torch.rand(batch, generator=generator, device=images.device, dtype=images.real.dtype)
    sigma = torch.exp(math.log(sigma_min) + u * (math.log(sigma_max) - math.log(sigma_min)))
    noise = complex_gaussian(tuple(images.shape), 1.0, images, generator)
    denoised = denoiser(images + sigma[:, None, None] * noise, sigma)
    residual = (denoised - images) / sigma[:, None, None]
    return torch.view_as_real(residual).pow(2).mean()


class DiffusionReconstructor(nn.Module):
    """A diffusion prior sampled with data consistency at every level (the ``diffusion`` method).

    Args:
        chans, num_pool_layers: its :class:`NoiseConditionalDenoiser`'s U-Net.
        steps: noise levels walked (the sampler's cost: ``steps`` denoiser and CG solves).
        sigma_max, sigma_min: the ladder's ends (:func:`noise_levels`), and the range of levels the
            denoiser is trained at (:meth:`training_loss`).
        lam: weight of the denoised estimate in the data-consistency solve
            ``(A^H A + lam I) x = A^H y + lam D``; small values keep the sampled k-space close to ``y``.
        cg_max_iter, cg_tol: the multicoil solve's conjugate gradient.
    """

    # Every sample draws fresh noise (attacks average over the draws, EOT).
    randomised = True

    def __init__(
        self,
        chans: int = 32,
        num_pool_layers: int = 3,
        steps: int = 20,
        sigma_max: float = 0.5,
        sigma_min: float = 0.005,
        lam: float = 0.01,
        cg_max_iter: int = 20,
        cg_tol: float = 1e-6,
    ):
        super().__init__()
        if not lam > 0:
            raise ValueError(f"lam must be positive, got {lam}")
        self.denoiser = NoiseConditionalDenoiser(chans, num_pool_layers)
        self.sigmas = noise_levels(sigma_max, sigma_min, steps)
        self.sigma_max, self.sigma_min = float(sigma_max), float(sigma_min)
        self.lam = float(lam)
        self.cg_max_iter = cg_max_iter
        self.cg_tol = cg_tol

    def training_loss(self, images: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Denoising score matching of its denoiser on clean complex ``(B, H, W)`` images, at levels
        drawn log-uniformly from ``[sigma_min, sigma_max]`` (:func:`score_matching_loss`)."""
        return score_matching_loss(self.denoiser, images, generator, self.sigma_min, self.sigma_max)

    def forward(
        self, kspace: torch.Tensor, physics: MRIPhysics, *, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Measured k-space ``(B, C, H, W)`` to a complex ``(B, H, W)`` sample."""
        aty = physics.zero_filled_image(kspace)
        lam = torch.tensor(self.lam, dtype=aty.real.dtype, device=aty.device)
        image = aty + complex_gaussian(tuple(aty.shape), self.sigmas[0], aty, generator)
        estimate = aty
        for index, sigma in enumerate(self.sigmas):
            level = torch.full((aty.shape[0],), sigma, dtype=aty.real.dtype, device=aty.device)
            estimate = physics.data_consistency(
                self.denoiser(image, level), aty, lam, max_iter=self.cg_max_iter, tol=self.cg_tol
            )
            following = self.sigmas[index + 1] if index + 1 < len(self.sigmas) else 0.0
            image = estimate + complex_gaussian(tuple(aty.shape), following, aty, generator)
        return estimate
