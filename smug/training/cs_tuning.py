"""Tuning a compressed-sensing method's regularisation weight ``lam`` by grid search on validation slices."""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np
import torch

from smug.evaluation import metrics
from smug.models import CompressedSensing
from smug.data import Batch


def slice_metrics(recon: torch.Tensor, target: torch.Tensor) -> tuple[list[float], list[float]]:
    """fastMRI PSNR and SSIM of magnitudes, per slice (each slice its own peak; targets have max 1).

    Args:
        recon, target: complex ``(B, H, W)``.

    Returns:
        ``(psnr per slice, ssim per slice)``.
    """
    pred = recon.detach().abs().cpu().double().numpy()
    gt = target.detach().abs().cpu().double().numpy()
    psnrs = [metrics.psnr(g[None], p[None]) for g, p in zip(gt, pred)]
    ssims = [metrics.ssim(g[None], p[None]) for g, p in zip(gt, pred)]
    return psnrs, ssims


def tune_regularization(
    method: str,
    lams: Iterable[float],
    dataset_batches: Iterable[Batch],
    num_iters: int,
    device: torch.device | str | None = None,
    **solver_kwargs: Any,
) -> tuple[float, list[dict[str, float]]]:
    """Grid search of ``lam`` by mean slice PSNR on validation batches (the robustness study's tuning).

    Each batch is read once and reconstructed with every ``lam``, so a DataLoader works as well as a
    list. Ties go to the first ``lam`` of the grid.

    Args:
        method: ``l1_wavelet`` or ``tv``.
        lams: candidate weights (non-empty, positive).
        dataset_batches: validation slices, with their ``target``.
        num_iters: solver iterations.
        device: where to run (None: where the batches are).
        **solver_kwargs: method options (see :data:`SOLVER_OPTIONS`).

    Returns:
        ``(best_lam, table)``: ``table`` lists ``{"lam", "psnr", "ssim"}`` (means over slices) in grid order.
    """
    lams = [float(lam) for lam in lams]
    if not lams:
        raise ValueError("tune_regularization: the lam grid is empty")
    models = [CompressedSensing(method, lam, num_iters, **solver_kwargs) for lam in lams]
    psnrs: list[list[float]] = [[] for _ in lams]
    ssims: list[list[float]] = [[] for _ in lams]
    with torch.no_grad():
        for batch in dataset_batches:
            if batch.target is None:
                raise ValueError("tune_regularization: a batch has no target to score against")
            if device is not None:
                batch = batch.to(device)
            # A^H y once per batch, shared by every lam of the grid.
            physics = batch.physics.with_zero_filled(batch.physics.A_adjoint(batch.kspace))
            for i, model in enumerate(models):
                slice_psnr, slice_ssim = slice_metrics(model(batch.kspace, physics), batch.target)
                psnrs[i] += slice_psnr
                ssims[i] += slice_ssim
    if not psnrs[0]:
        raise ValueError("tune_regularization: no validation batches")
    table = [
        {"lam": lam, "psnr": float(np.mean(p)), "ssim": float(np.mean(s))}
        for lam, p, s in zip(lams, psnrs, ssims)
    ]
    best = max(range(len(lams)), key=lambda i: (table[i]["psnr"], -i))
    return lams[best], table
