"""fastMRI's published U-Net and E2E-VarNet weights, loaded into this project's models.

fastMRI's ``Unet`` and ``VarNet`` and this project's :class:`~smug.models.unet.UNet` and
:class:`~smug.models.varnet.E2EVarNet` have the same layers in the same order; only four U-Net
module names differ (``down_sample_layers``, ``conv``, ``up_conv``, ``up_transpose_conv`` here
``down_blocks``, ``bottleneck``, ``up_blocks``, ``up_transposes``), and fastMRI's cascades keep a
constant zero buffer this project does not need. A checkpoint is read without running code
(:func:`smug.utils.load_torch_file`), its keys translated, and loaded with strict key and shape
matching, so a checkpoint of another layout or size fails with the keys that differ.

Accepted files: a plain ``state_dict`` (fastMRI's pretrained-model downloads), or a PyTorch
Lightning checkpoint of fastMRI's ``UnetModule``/``VarNetModule`` (``state_dict`` with ``unet.`` or
``varnet.`` before every key).
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from smug.models.e2e_unet import ZeroFilledUNet
from smug.models.varnet import E2EVarNet
from smug.utils import load_torch_file

# fastMRI's published sizes (fastmri/models/unet.py and varnet.py defaults; the leaderboard models).
PUBLISHED_SIZES: dict[str, dict[str, Any]] = {
    "unet": {"chans": 32, "num_pool_layers": 4},
    "varnet": {"num_cascades": 12, "chans": 18, "pools": 4, "sens_chans": 8, "sens_pools": 4},
}
ARCHITECTURES = tuple(PUBLISHED_SIZES)

# fastMRI's U-Net module names -> this project's.
UNET_NAMES = {
    "down_sample_layers": "down_blocks",
    "conv": "bottleneck",
    "up_conv": "up_blocks",
    "up_transpose_conv": "up_transposes",
}


def fastmri_key(key: str, architecture: str) -> str | None:
    """This project's name of a fastMRI parameter (None: a constant buffer with no counterpart).

    A U-Net's own module names are renamed where they follow ``unet`` (every U-Net inside VarNet)
    or start the key (a bare U-Net checkpoint); a U-Net checkpoint's keys gain the ``unet.`` prefix
    of :class:`~smug.models.e2e_unet.ZeroFilledUNet`.
    """
    parts = key.split(".")
    if architecture == "varnet" and len(parts) == 3 and parts[0] == "cascades" and parts[2] == "zero":
        return None
    for index, part in enumerate(parts):
        first = index == 0 and architecture == "unet"
        if part in UNET_NAMES and (first or index > 0 and parts[index - 1] == "unet"):
            parts[index] = UNET_NAMES[part]
    translated = ".".join(parts)
    return f"unet.{translated}" if architecture == "unet" else translated


def build_fastmri_model(architecture: str, **sizes: Any) -> nn.Module:
    """This project's model of a fastMRI architecture, fastMRI's published sizes unless overridden."""
    if architecture not in PUBLISHED_SIZES:
        raise ValueError(f"unknown fastMRI architecture {architecture!r}; valid: {', '.join(ARCHITECTURES)}")
    unknown = sorted(set(sizes) - set(PUBLISHED_SIZES[architecture]))
    if unknown:
        raise ValueError(
            f"fastMRI {architecture} has no size {', '.join(unknown)}; "
            f"valid: {', '.join(PUBLISHED_SIZES[architecture])}"
        )
    settings = {**PUBLISHED_SIZES[architecture], **sizes}
    if architecture == "unet":
        # fastMRI's U-Net baseline: magnitude in, magnitude out (one channel each).
        return ZeroFilledUNet("magnitude", settings["chans"], settings["num_pool_layers"])
    return E2EVarNet(**settings, estimate_sens=True)


def load_fastmri_checkpoint(path: str | os.PathLike, architecture: str, **sizes: Any) -> nn.Module:
    """fastMRI's ``architecture`` (``unet`` or ``varnet``) with the weights of ``path``, in eval mode.

    Args:
        path: a fastMRI ``state_dict`` or Lightning checkpoint (see the module notes).
        architecture: ``unet`` or ``varnet``.
        **sizes: overrides of :data:`PUBLISHED_SIZES` (e.g. ``chans=256`` for a wider U-Net).

    Raises:
        ValueError: an unknown architecture or size, a file that is not a state dict, non-finite
            weights, or keys or shapes that do not match the architecture (each listed).
    """
    model = build_fastmri_model(architecture, **sizes)
    record = load_torch_file(path, what=f"fastMRI {architecture} checkpoint")
    state = _state_dict(record, path)
    translated = {}
    for key, value in state.items():
        name = fastmri_key(key, architecture)
        if name is None:
            continue
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"{path}: {key} is a {type(value).__name__}, not a tensor")
        if value.is_floating_point() and not torch.isfinite(value).all():
            raise ValueError(f"{path}: {key} holds non-finite values")
        translated[name] = value
    expected = model.state_dict()
    missing = sorted(set(expected) - set(translated))
    unexpected = sorted(set(translated) - set(expected))
    wrong = [
        f"{k} {tuple(translated[k].shape)} (expected {tuple(expected[k].shape)})"
        for k in sorted(set(expected) & set(translated))
        if translated[k].shape != expected[k].shape
    ]
    if missing or unexpected or wrong:
        sizes_used = {**PUBLISHED_SIZES[architecture], **sizes}
        problems = [
            f"{label}: {', '.join(items[:5])}{' ...' if len(items) > 5 else ''}"
            for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong))
            if items
        ]
        raise ValueError(
            f"{path} is not a fastMRI {architecture} with sizes {sizes_used}: " + "; ".join(problems)
        )
    model.load_state_dict(translated, strict=True)
    return model.eval()


def _state_dict(record: Any, path: str | os.PathLike) -> dict[str, Any]:
    """The state dict of a plain or Lightning checkpoint, without a module-wide key prefix."""
    state = record.get("state_dict", record) if isinstance(record, dict) else None
    if not isinstance(state, dict) or not state or not all(isinstance(k, str) for k in state):
        raise ValueError(f"{path}: not a PyTorch state dict (nor a Lightning checkpoint holding one)")
    for prefix in ("unet.", "varnet."):
        if all(key.startswith(prefix) for key in state):
            return {key[len(prefix) :]: value for key, value in state.items()}
    return state
