"""Calling any reconstruction model on a batch: the one place that knows the shared signature.

Every model (MoDL and its smoothed variants, U-Nets, compressed sensing, the untrained network,
zero-filled) is called as ``model(kspace, mask, sens_maps, num_unrolls=..., generator=...,
trace=..., zero_filled=...)``, with the fields of a :class:`smug.data.datasets.Batch`.
"""

from __future__ import annotations

import torch
from torch import nn

from smug.data import Batch


def reconstruct(
    model: nn.Module,
    batch: Batch,
    generator: torch.Generator | None = None,
    trace=None,
    num_unrolls: int | None = None,
) -> torch.Tensor:
    """``model``'s complex ``(B, H, W)`` reconstruction of ``batch``.

    Args:
        model: any reconstruction model.
        batch: the slices; its ``kspace``, ``mask``, ``sens_maps`` and ``zero_filled`` reach the model.
        generator: noise source of randomised models.
        trace: :class:`smug.models.modl.UnrollTrace` to fill (unrolled models).
        num_unrolls: unroll count override (unrolled models; others ignore it).
    """
    return model(
        batch.kspace,
        batch.mask,
        batch.sens_maps,
        num_unrolls=num_unrolls,
        generator=generator,
        trace=trace,
        zero_filled=batch.zero_filled,
    )
