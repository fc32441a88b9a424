"""The fastMRI U-Net baseline as an end-to-end reconstruction model.

The network maps the zero-filled image ``A^H y`` straight to the reconstruction, with no data
consistency. fastMRI's baseline feeds the magnitude of the zero-filled image, normalised per
instance (subtract the mean, divide by the standard deviation, clamp to +-6), and trains on the
equally normalised target; here the normalisation lives inside the model and is undone on the
output, so the model has the same interface and output scale as MoDL and friends.
"""

from __future__ import annotations

import torch
from torch import nn

from smug.models.unet import UNet
from smug.mri import MRIPhysics, channels_to_complex, complex_to_channels

INPUT_MODES = ("magnitude", "complex")


def normalize_instance(
    x: torch.Tensor, clamp: float = 6.0, eps: float = 1e-11
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-sample, per-channel standardisation, clamped.

    Args:
        x: real ``(B, C, H, W)``.
        clamp: bound on the normalised values (fastMRI: 6).
        eps: keeps a constant image finite.

    Returns:
        ``(normalised, mean, std)`` with ``mean`` and ``std`` of shape ``(B, C, 1, 1)``.
    """
    mean = x.mean(dim=(-2, -1), keepdim=True)
    std = x.std(dim=(-2, -1), keepdim=True)
    return ((x - mean) / (std + eps)).clamp(-clamp, clamp), mean, std


class ZeroFilledUNet(nn.Module):
    """U-Net on the zero-filled image: ``f(y) = unnorm(UNet(norm(A^H y)))``.

    ``input_mode="magnitude"`` is fastMRI's baseline: one input channel ``|A^H y|`` and one real
    output channel, returned as a complex tensor with zero imaginary part (its phase is meaningless;
    the study's metrics compare magnitudes, so this is harmless there, but a complex loss such as
    :func:`smug.training.objectives.complex_mse` against a complex target also penalises the target's phase,
    so train the magnitude variant against ``target.abs()`` or with a magnitude loss).
    ``input_mode="complex"`` feeds and predicts real and imaginary parts as two channels, each
    normalised separately as fastMRI's ``NormUnet`` does.

    Args:
        input_mode: "magnitude" or "complex".
        chans: channels after the U-Net's first block (fastMRI: 32).
        num_pool_layers: down/up-sampling stages (fastMRI: 4).
        drop_prob: dropout probability (fastMRI: 0).
        clamp: bound on the normalised input (fastMRI: 6).
    """

    def __init__(
        self,
        input_mode: str = "magnitude",
        chans: int = 32,
        num_pool_layers: int = 4,
        drop_prob: float = 0.0,
        clamp: float = 6.0,
    ):
        super().__init__()
        if input_mode not in INPUT_MODES:
            raise ValueError(f"unknown input_mode {input_mode!r}; valid: {', '.join(INPUT_MODES)}")
        if clamp <= 0:
            raise ValueError(f"clamp must be positive, got {clamp}")
        self.input_mode = input_mode
        self.clamp = clamp
        num_chans = 1 if input_mode == "magnitude" else 2
        self.unet = UNet(num_chans, num_chans, chans, num_pool_layers, drop_prob)

    def forward(self, kspace: torch.Tensor, physics: MRIPhysics) -> torch.Tensor:
        """Reconstruct from undersampled k-space.

        Args:
            kspace: measured k-space ``y``, complex ``(B, C, H, W)`` (``C = 1`` single-coil).
            physics: the batch's operator; the network sees only ``physics.zero_filled_image(y)``
                (``A^H y``, or its image-domain perturbation). It is not unrolled and has no
                randomness besides dropout.

        Returns:
            complex ``(B, H, W)``; real-valued (zero imaginary part) in magnitude mode.
        """
        aty = physics.zero_filled_image(kspace)
        if not torch.is_complex(aty) or aty.ndim != 3:
            raise ValueError(
                f"zero-filled image must be complex (B, H, W), got {aty.dtype} {tuple(aty.shape)}"
            )
        if self.input_mode == "magnitude":
            channels = aty.abs().unsqueeze(1)
        else:
            channels = complex_to_channels(aty)
        normalised, mean, std = normalize_instance(channels, self.clamp)
        out = self.unet(normalised) * std + mean
        if self.input_mode == "magnitude":
            real = out.squeeze(1)
            return torch.complex(real, torch.zeros_like(real))
        return channels_to_complex(out)
