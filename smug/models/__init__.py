"""Networks: the denoisers used inside the unrolled reconstructions and Weighted SMUG's scorer.

All take and return real tensors ``(B, C, H, W)``; complex images cross into this form through
:func:`smug.mri.transforms.complex_to_channels`.
"""

from smug.models.didn import DIDN, DownUpBlock
from smug.models.dncnn import DnCNN
from smug.models.denoisers import DENOISERS, build_denoiser, count_parameters
from smug.models.unet import UNet
from smug.models.weight_encoder import WeightEncoder

__all__ = [
    "DENOISERS",
    "DIDN",
    "DnCNN",
    "DownUpBlock",
    "UNet",
    "WeightEncoder",
    "build_denoiser",
    "count_parameters",
]
