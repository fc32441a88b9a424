"""Scoring reconstructions the way fastMRI does, and summarising scores over test volumes.

Reconstructions and targets are magnitudes grouped per volume; NMSE, PSNR and SSIM follow
fastMRI's ``evaluate.py`` (per volume, PSNR/SSIM with the volume maximum as data range). Summaries
give the mean and standard deviation over volumes and a percentile-bootstrap 95 % interval.
"""

from __future__ import annotations

import os
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import h5py
import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from smug.io import atomic_path
from smug.metrics import METRIC_FUNCS, bootstrap_ci
from smug.reconstruct import reconstruct
from smug.data import Batch, collate

BatchTransform = Callable[[Batch, int], Batch]

ROW_COLUMNS = ["model", "perturbation", "level", "metric", "volume", "value", "n_slices"]
TABLE_COLUMNS = ["model", "perturbation", "level", "metric", "mean", "std", "ci_low", "ci_high", "n_slices"]


@dataclass
class VolumeStack:
    """Slices of one volume in slice order: magnitudes ``(S, h, w)`` of reconstruction and target."""

    slices: list[int] = field(default_factory=list)
    recon: list[np.ndarray] = field(default_factory=list)
    target: list[np.ndarray] = field(default_factory=list)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        order = np.argsort(self.slices)
        return np.stack(self.recon)[order], np.stack(self.target)[order]


def reconstruct_volumes(
    model: nn.Module,
    dataset,
    device: torch.device,
    batch_size: int,
    seed: int,
    transform: BatchTransform | None = None,
    num_unrolls: int | None = None,
    progress: str | None = None,
) -> dict[str, VolumeStack]:
    """Reconstruct every slice of ``dataset`` and group magnitudes by volume.

    Args:
        model: any reconstruction model (see :mod:`smug.models.modl` for the call signature).
        dataset: a :class:`smug.data.SliceDataset`.
        device: where to run.
        batch_size: slices per forward pass.
        seed: seeds the model's smoothing noise (repeatable scores for randomised models).
        transform: ``(batch, first_index) -> batch`` applied before reconstruction (perturbations).
        num_unrolls: override for unrolled models.
        progress: label of a progress bar (shown only on a terminal).

    Returns:
        ``{fname: VolumeStack}``.
    """
    model.eval()
    generator = torch.Generator(device=device).manual_seed(seed)
    volumes: dict[str, VolumeStack] = defaultdict(VolumeStack)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate)
    first = 0
    for batch in tqdm(loader, desc=progress, disable=progress is None or not sys.stderr.isatty(), leave=False):
        batch = batch.to(device)
        if transform is not None:
            batch = transform(batch, first)
        with torch.no_grad():
            recon = reconstruct(model, batch, generator, num_unrolls=num_unrolls)
        for i, (fname, slice_idx) in enumerate(zip(batch.fnames, batch.slices)):
            stack = volumes[fname]
            stack.slices.append(int(slice_idx))
            stack.recon.append(recon[i].abs().cpu().numpy())
            stack.target.append(batch.target[i].abs().cpu().numpy())
        first += len(batch.fnames)
    return dict(volumes)


def volume_rows(volumes: dict[str, VolumeStack], model: str, perturbation: str, level: float) -> list[dict]:
    """One row per (volume, metric) with fastMRI's per-volume NMSE, PSNR and SSIM."""
    rows = []
    for fname, stack in sorted(volumes.items()):
        recon, target = stack.arrays()
        for metric, func in METRIC_FUNCS.items():
            rows.append(
                {
                    "model": model,
                    "perturbation": perturbation,
                    "level": float(level),
                    "metric": metric,
                    "volume": fname,
                    "value": float(func(target, recon)),
                    "n_slices": len(stack.slices),
                }
            )
    return rows


def summarize(rows: pd.DataFrame, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Mean, std (ddof=1, 0 for one volume), bootstrap 95 % CI over volumes, and slice counts.

    Args:
        rows: per-volume rows with :data:`ROW_COLUMNS`.

    Returns:
        one row per (model, perturbation, level, metric) with :data:`TABLE_COLUMNS`.
    """
    missing = set(ROW_COLUMNS) - set(rows.columns)
    if missing:
        raise ValueError(f"per-volume rows lack column(s) {', '.join(sorted(missing))}")
    out = []
    for key, group in rows.groupby(["model", "perturbation", "level", "metric"], sort=True):
        values = group["value"].to_numpy(dtype=float)
        low, high = bootstrap_ci(values, n_boot=n_boot, seed=seed)
        out.append(
            {
                **dict(zip(["model", "perturbation", "level", "metric"], key)),
                "mean": values.mean(),
                "std": values.std(ddof=1) if len(values) > 1 else 0.0,
                "ci_low": low,
                "ci_high": high,
                "n_slices": int(group["n_slices"].sum()),
            }
        )
    return pd.DataFrame(out, columns=TABLE_COLUMNS)


def save_reconstructions(directory: str | os.PathLike, volumes: dict[str, VolumeStack], key: str) -> None:
    """Write one fastMRI-style ``{fname}`` HDF5 per volume with dataset ``key`` ``(S, h, w)``.

    ``key="reconstruction"`` for predictions, ``reconstruction_rss``/``reconstruction_esc`` for the
    matching targets, so fastMRI's own ``evaluate.py`` can re-score them.
    """
    directory = Path(directory)
    for fname, stack in volumes.items():
        recon, target = stack.arrays()
        data = recon if key == "reconstruction" else target
        with atomic_path(directory / fname) as tmp, h5py.File(tmp, "w") as f:
            f.create_dataset(key, data=data.astype(np.float32))
            f.attrs["slices"] = np.asarray(sorted(stack.slices))
