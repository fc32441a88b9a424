"""Calling any reconstruction model on a batch: the one place that knows the interface.

Every model (MoDL and its smoothed variants, U-Nets, compressed sensing, the untrained network,
zero-filled) is called as ``model(y, physics, **options)``: the measured k-space and the batch's
:class:`smug.mri.MRIPhysics`. A model declares only the options it uses: ``generator`` (its noise
source) when it is ``randomised``, ``trace`` and ``num_unrolls`` when it is unrolled; this function
passes each only where it applies, so no model accepts an option to ignore it.
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
        batch: the slices; ``batch.kspace`` and ``batch.physics`` reach the model.
        generator: noise source, passed to randomised models (``model.randomised``) only.
        trace: :class:`smug.models.unrolled.UnrollTrace` to fill (unrolled models only).
        num_unrolls: unroll count override (unrolled models only).
    """
    return model(batch.kspace, batch.physics, **call_options(model, generator, trace, num_unrolls))


def call_options(
    model: nn.Module, generator: torch.Generator | None = None, trace=None, num_unrolls: int | None = None
) -> dict:
    """The keyword options to call ``model`` with: ``generator`` if it is randomised, ``trace`` and
    ``num_unrolls`` if given (the module's docstring says why no model gets one it does not use)."""
    options = {}
    if getattr(model, "randomised", False):
        options["generator"] = generator
    if trace is not None:
        options["trace"] = trace
    if num_unrolls is not None:
        options["num_unrolls"] = num_unrolls
    return options
