"""E2E-VarNet (Sriram et al. 2020): cascades of k-space soft data consistency and a U-Net regulariser
applied through the coil maps, optionally with its sensitivity-estimation network.

One cascade, on the current k-space estimate ``k``:

    k <- k - eta M (k - y) - F S R(S^H F^H k)

with ``eta`` the cascade's learned ``dc_weight``, ``M`` the column mask and ``R`` a U-Net on the
coil-combined image (real and imaginary parts as two channels, each standardised, padded to a
multiple of 16), fastMRI's ``NormUnet``. Its measurements are ``physics.kspace_input(y)``
(``y`` itself unless an image-domain attack perturbs ``A^H y``): the first estimate and what the
soft data consistency pulls towards. It returns the coil combination
``S^H F^H k`` of its last estimate (complex, so every metric and attack of the pipeline applies; its
magnitude is fastMRI's RSS output when the maps are RSS-normalised, as the estimated ones are).

The maps: the given ones (``physics.sens_maps``; ones for single-coil data), or, with
``estimate_sens=True`` (fastMRI's method), a U-Net applied coil by coil to the images of the
fully sampled centre of ``y``, divided by their root-sum-of-squares.

Module and parameter names follow fastMRI's ``VarNet`` (``sens_net.norm_unet.unet``,
``cascades.<i>.model.unet``, ``cascades.<i>.dc_weight``), apart from the U-Net's own layers, whose
names :func:`smug.models.fastmri_checkpoints.load_fastmri_checkpoint` translates.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

from smug.models.unet import UNet
from smug.models.unrolled import Regularizer, SmoothedUnrolling, UnrollTrace
from smug.mri import (
    MRIPhysics,
    broadcast_mask,
    channels_to_complex,
    complex_to_channels,
    fft2c,
    ifft2c,
    rss,
    sens_combine,
    sens_expand,
)


class NormUNet(nn.Module):
    """fastMRI's ``NormUnet`` on complex images: ``(N, H, W)`` complex in and out.

    Real and imaginary parts become two channels, each standardised by its own mean and (unbiased)
    standard deviation over the image, zero-padded to a multiple of 16 on each side, passed through
    a :class:`UNet` and mapped back.
    """

    def __init__(self, chans: int, num_pools: int, drop_prob: float = 0.0):
        super().__init__()
        self.unet = UNet(2, 2, chans, num_pools, drop_prob)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Complex ``(N, H, W) -> (N, H, W)``."""
        channels = torch.stack([image.real, image.imag], dim=1)
        mean = channels.mean(dim=(-2, -1), keepdim=True)
        std = channels.std(dim=(-2, -1), keepdim=True)
        normalised = (channels - mean) / std
        height, width = image.shape[-2:]
        pad_h, pad_w = (-height) % 16, (-width) % 16
        padded = F.pad(normalised, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))
        out = self.unet(padded)[..., pad_h // 2 : pad_h // 2 + height, pad_w // 2 : pad_w // 2 + width]
        out = out * std + mean
        return torch.complex(out[:, 0], out[:, 1])


def center_columns(mask: torch.Tensor) -> torch.Tensor:
    """The fully sampled centre of a column mask: the run of sampled columns around ``W // 2``.

    Args:
        mask: ``(W,)`` or ``(B, W)``, bool or 0/1.

    Returns:
        bool, the mask's shape: True on the centre run only.
    """
    rows = mask.reshape(-1, mask.shape[-1]).bool()
    centre = torch.zeros_like(rows)
    middle = rows.shape[-1] // 2
    for row, kept in zip(rows, centre):
        left = right = middle
        while right < len(row) and row[right]:
            right += 1
        while left >= 0 and row[left]:
            left -= 1
        kept[left + 1 : right] = True
    return centre.reshape(mask.shape)


class SensitivityNet(nn.Module):
    """fastMRI's ``SensitivityModel``: coil maps estimated from the centre of the measured k-space.

    Each coil's image of the fully sampled centre goes through a :class:`NormUNet`; the results are
    divided by their root-sum-of-squares over the coils, so ``sum_c |S_c|^2 = 1``.
    """

    def __init__(self, chans: int, num_pools: int, drop_prob: float = 0.0):
        super().__init__()
        self.norm_unet = NormUNet(chans, num_pools, drop_prob)

    def forward(self, kspace: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """k-space ``(B, C, H, W)`` and its column mask to maps ``(B, C, H, W)``, complex."""
        centre = broadcast_mask(center_columns(mask))
        coil_images = ifft2c(kspace * centre.to(kspace.real.dtype))
        batch, coils = coil_images.shape[:2]
        maps = self.norm_unet(coil_images.reshape(batch * coils, *coil_images.shape[-2:]))
        maps = maps.reshape(coil_images.shape)
        return maps / rss(maps, dim=1).unsqueeze(1)


class VarNetCascade(nn.Module):
    """One cascade: ``k - dc_weight M (k - y) - F S R(S^H F^H k)`` (fastMRI's ``VarNetBlock``)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.dc_weight = nn.Parameter(torch.ones(1))

    def denoise(self, channels: torch.Tensor) -> torch.Tensor:
        """The cascade's denoising step ``x - R(x)`` on 2-channel images ``(N, 2, H, W)``: the image
        the U-Net's correction moves ``x`` to, what SMUG smooths."""
        return channels - complex_to_channels(self.model(channels_to_complex(channels)))

    def forward(
        self,
        current: torch.Tensor,
        measured: torch.Tensor,
        mask: torch.Tensor,
        sens_maps: torch.Tensor,
        denoise=None,
    ) -> torch.Tensor:
        """k-space estimates ``(B, C, H, W)``; ``mask`` broadcasts against them (bool).

        ``denoise``: the complex ``(B, H, W) -> (B, H, W)`` step replacing ``x - R(x)`` (its
        randomised smoothing); None applies the U-Net as fastMRI does.
        """
        soft_dc = torch.where(mask, current - measured, torch.zeros_like(current)) * self.dc_weight
        image = sens_combine(ifft2c(current), sens_maps)
        correction = self.model(image) if denoise is None else image - denoise(image)
        return current - soft_dc - fft2c(sens_expand(correction, sens_maps))


class E2EVarNet(SmoothedUnrolling):
    """The end-to-end variational network behind the reconstructor interface.

    SMUG on E2E-VarNet smooths each cascade's denoising step ``x - R(x)`` (:meth:`regularizer`);
    with smoothing ``none`` the cascades apply their U-Nets exactly as fastMRI's do.

    Args:
        num_cascades: cascades (fastMRI: 12).
        chans, pools: each cascade's U-Net (fastMRI: 18 channels, 4 pools).
        sens_chans, sens_pools: the sensitivity network's U-Net (fastMRI: 8 channels, 4 pools).
        estimate_sens: estimate the maps from the data (fastMRI's method); otherwise use the
            physics' maps (ones for single-coil data).
        smoothing, sigma, num_samples, weight_encoder, weight_scores, weight_normalisation: the
            smoothing of every cascade's regulariser (:class:`smug.models.unrolled.SmoothedUnrolling`).
    """

    def __init__(
        self,
        num_cascades: int = 12,
        chans: int = 18,
        pools: int = 4,
        sens_chans: int = 8,
        sens_pools: int = 4,
        estimate_sens: bool = True,
        smoothing: str = "none",
        sigma: float = 0.01,
        num_samples: int = 10,
        weight_encoder: nn.Module | None = None,
        weight_scores: str = "denoised",
        weight_normalisation: str = "sum",
    ):
        super().__init__()
        if num_cascades < 1:
            raise ValueError(f"E2EVarNet: num_cascades must be at least 1, got {num_cascades}")
        self.estimate_sens = bool(estimate_sens)
        self.sens_net = SensitivityNet(sens_chans, sens_pools) if estimate_sens else None
        self.cascades = nn.ModuleList([VarNetCascade(NormUNet(chans, pools)) for _ in range(num_cascades)])
        self.init_smoothing(
            smoothing, sigma, num_samples, weight_encoder, weight_scores, weight_normalisation
        )

    def regularizer(self, step: int) -> Regularizer:
        """Cascade ``step``'s denoising step ``x - R(x)`` on 2-channel images."""
        return self.cascades[step].denoise

    def coil_maps(self, kspace: torch.Tensor, physics: MRIPhysics) -> torch.Tensor:
        """The maps the cascades use, complex ``(B, C, H, W)``."""
        if self.sens_net is not None:
            return self.sens_net(kspace, physics.mask)
        if physics.sens_maps is not None:
            return physics.sens_maps
        return torch.ones_like(kspace)

    def forward(
        self,
        kspace: torch.Tensor,
        physics: MRIPhysics,
        *,
        generator: torch.Generator | None = None,
        trace: UnrollTrace | None = None,
    ) -> torch.Tensor:
        """Measured k-space ``(B, C, H, W)`` to the complex image ``(B, H, W)``.

        ``generator``: the smoothing noise's source; ``trace``: filled with each cascade's
        regulariser inputs and outputs (the unrolled stability loss's).
        """
        # The network's measurements: y itself, or under an image-domain attack the k-space whose
        # coil combination is the perturbed A^H y; the soft data consistency pulls towards them, as
        # MoDL's data consistency pulls towards the perturbed A^H y.
        measured = physics.kspace_input(kspace)
        maps = self.coil_maps(measured, physics)
        mask = broadcast_mask(physics.mask.bool())
        estimate = measured
        for step, cascade in enumerate(self.cascades):

            def body(state, generator, trace, step=step, cascade=cascade):
                denoise = None
                if self.randomised or trace is not None:
                    denoise = functools.partial(self.regularize, step, generator=generator, trace=trace)
                return (cascade(state[0], measured, mask, maps, denoise),)

            (estimate,) = self.unroll(body, (estimate,), generator, trace)
        return sens_combine(ifft2c(estimate), maps)
