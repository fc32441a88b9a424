"""Deep Iterative Down-Up Network (DIDN), the denoiser of the SMUG unrolled network.

Yu, Park and Jeong, "Deep Iterative Down-Up CNN for Image Denoising", CVPR Workshops 2019. The
variant here is the one the SMUG code trains: a head at half resolution, ``num_dubs`` down-up
blocks whose outputs are all kept, a 1x1 fusion, one residual refinement, sub-pixel upsampling to
full resolution and a global residual. ``num_dubs=2`` with ``num_chans=64`` is the conference
configuration (about 3.37 M parameters); the journal code uses 3.

Each down-up block works on three scales (1, 1/2, 1/4 of its input): strided 3x3 convolutions go
down, 1x1 convolutions followed by :class:`torch.nn.PixelShuffle` go up, and the two skips are
fused by 1x1 convolutions. With the head's own stride-2 convolution the network downsamples by 8,
so inputs are zero-padded to a multiple of 8 and the output is cropped back.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from smug.mri import center_crop

# head stride 2, then two stride-2 stages inside every down-up block
_SIZE_MULTIPLE = 8
CHANNELS_LAST = ("auto", "on", "off")


def _conv_prelu(in_chans: int, out_chans: int, kernel_size: int = 3, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_chans, out_chans, kernel_size, stride=stride, padding=kernel_size // 2),
        nn.PReLU(),
    )


class DownUpBlock(nn.Module):
    """One down-up block (DUB): a small three-scale U-shaped residual network.

    Maps ``(B, C, H, W) -> (B, C, H, W)`` with ``H`` and ``W`` multiples of 4.
    """

    def __init__(self, num_chans: int):
        super().__init__()
        c = num_chans
        self.res_full = nn.Sequential(_conv_prelu(c, c), _conv_prelu(c, c))
        self.down_half = _conv_prelu(c, 2 * c, stride=2)
        self.res_half = _conv_prelu(2 * c, 2 * c)
        self.down_quarter = _conv_prelu(2 * c, 4 * c, stride=2)
        self.res_quarter = _conv_prelu(4 * c, 4 * c)
        # sub-pixel upsampling: expand channels 4x, then trade them for a 2x larger grid
        self.up_half = nn.Sequential(nn.Conv2d(4 * c, 8 * c, 1), nn.PixelShuffle(2))
        self.fuse_half = nn.Conv2d(4 * c, 2 * c, 1)
        self.res_half_up = _conv_prelu(2 * c, 2 * c)
        self.up_full = nn.Sequential(nn.Conv2d(2 * c, 4 * c, 1), nn.PixelShuffle(2))
        self.fuse_full = nn.Conv2d(2 * c, c, 1)
        self.res_full_up = nn.Sequential(_conv_prelu(c, c), _conv_prelu(c, c))
        self.tail = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W) -> (B, C, H, W)``."""
        full = x + self.res_full(x)
        half = self.down_half(full)
        half = half + self.res_half(half)
        quarter = self.down_quarter(half)
        quarter = quarter + self.res_quarter(quarter)

        up = self.fuse_half(torch.cat([self.up_half(quarter), half], dim=1))
        up = up + self.res_half_up(up)
        up = self.fuse_full(torch.cat([self.up_full(up), full], dim=1))
        up = up + self.res_full_up(up)
        return x + self.tail(up)


class DIDN(nn.Module):
    """Deep iterative down-up network: ``(B, in_chans, H, W) -> (B, out_chans, H, W)``, any ``H, W``.

    Args:
        in_chans: input channels (2: real and imaginary parts).
        out_chans: output channels; must equal ``in_chans`` when ``global_residual`` is set.
        num_chans: feature channels at full block resolution; a multiple of 4 because the final
            pixel shuffle divides it by 4.
        num_dubs: number of down-up blocks (the SMUG code's ``n_res_blocks``: 2 in the
            conference code, 3 in the journal code).
        global_residual: add the input to the output, so the network learns the residual (its last
            convolution starts at zero: a fresh DIDN is the identity).
        channels_last: compute in the channels-last memory format: ``auto`` (on CPU, where
            oneDNN's convolutions run 1.1-1.6x faster with it, forward and backward, measured from
            16 to 64 channels and 32 to 320 pixels; not on CUDA, where float32 cuDNN gains
            nothing reliable), ``on`` or ``off``. Results equal within float rounding.
    """

    def __init__(
        self,
        in_chans: int = 2,
        out_chans: int = 2,
        num_chans: int = 64,
        num_dubs: int = 2,
        global_residual: bool = True,
        channels_last: str = "auto",
    ):
        super().__init__()
        if in_chans < 1 or out_chans < 1:
            raise ValueError(f"DIDN: in_chans and out_chans must be positive, got {in_chans}, {out_chans}")
        if num_chans < 4 or num_chans % 4:
            raise ValueError(f"DIDN: num_chans must be a positive multiple of 4, got {num_chans}")
        if num_dubs < 1:
            raise ValueError(f"DIDN: num_dubs must be at least 1, got {num_dubs}")
        if global_residual and in_chans != out_chans:
            raise ValueError(
                f"DIDN: global_residual needs in_chans == out_chans, got {in_chans} and {out_chans}"
            )
        if channels_last not in CHANNELS_LAST:
            raise ValueError(
                f"DIDN: channels_last must be one of {', '.join(CHANNELS_LAST)}, got {channels_last!r}"
            )
        self.channels_last = channels_last
        self.in_chans = in_chans
        self.out_chans = out_chans
        self.global_residual = global_residual

        self.head = nn.Sequential(
            _conv_prelu(in_chans, num_chans),
            _conv_prelu(num_chans, num_chans, stride=2),
        )
        self.dubs = nn.ModuleList(DownUpBlock(num_chans) for _ in range(num_dubs))
        # every block's output feeds the reconstruction, as in the paper's iterative design
        self.fuse = _conv_prelu(num_dubs * num_chans, num_chans, kernel_size=1)
        self.refine = _conv_prelu(num_chans, num_chans)
        self.upsample = nn.PixelShuffle(2)
        self.output = nn.Conv2d(num_chans // 4, out_chans, 3, padding=1)
        if global_residual:
            # Start as the identity: a fresh denoiser then never makes a clean-ish input worse, and
            # pre-training only has to learn the (small) residual.
            nn.init.zeros_(self.output.weight)
            nn.init.zeros_(self.output.bias)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """``(B, in_chans, H, W) -> (B, out_chans, H, W)``."""
        if image.ndim != 4 or image.shape[1] != self.in_chans:
            raise ValueError(
                f"DIDN expects a (B, {self.in_chans}, H, W) tensor, got shape {tuple(image.shape)}"
            )
        height, width = image.shape[-2:]
        padded = _pad_to_multiple(image, _SIZE_MULTIPLE)
        if self.channels_last == "on" or (self.channels_last == "auto" and padded.device.type == "cpu"):
            # The convolutions follow their input's layout; the weights need not be converted.
            padded = padded.contiguous(memory_format=torch.channels_last)

        features = self.head(padded)
        block_outputs = []
        for dub in self.dubs:
            features = dub(features)
            block_outputs.append(features)
        fused = self.fuse(torch.cat(block_outputs, dim=1))
        fused = fused + self.refine(fused)
        out = self.output(self.upsample(fused))

        if self.global_residual:
            out = out + padded
        return center_crop(out, (height, width)).contiguous()


def _pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Zero-pad ``(B, C, H, W)`` symmetrically (the extra pixel at the bottom/right) to multiples.

    The split matches :func:`smug.mri.transforms.center_crop`'s offsets, so cropping undoes it exactly.
    """
    height, width = x.shape[-2:]
    pad_h = -height % multiple
    pad_w = -width % multiple
    if pad_h == 0 and pad_w == 0:
        return x
    return F.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))
