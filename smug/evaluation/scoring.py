"""Scoring reconstructions the way fastMRI does, and summarising scores over seeds and test volumes.

Reconstructions and targets are magnitudes grouped per volume; NMSE, PSNR and SSIM follow
fastMRI's ``evaluate.py`` (per volume, PSNR/SSIM with the volume maximum as data range). Every row
carries the training seed of the model it scores; summaries give the mean and standard deviation
over seeds and volumes and a 95 % interval accounting for both (:mod:`smug.evaluation.statistics`).
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

from smug.utils import atomic_path
from smug.evaluation.metrics import METRIC_FUNCS
from smug.models.reconstruct import reconstruct
from smug.data import Batch, collate
from smug.evaluation.statistics import mean_interval

BatchTransform = Callable[[Batch, int], Batch]

ROW_COLUMNS = ["model", "perturbation", "level", "metric", "seed", "volume", "value", "n_slices"]
CONDITION = ["model", "perturbation", "level", "metric"]
TABLE_COLUMNS = [*CONDITION, "mean", "std", "ci_low", "ci_high", "n_slices", "n_seeds"]


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
        dataset: a :class:`smug.data.datasets.SliceDataset`.
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
    for batch in tqdm(
        loader, desc=progress, disable=progress is None or not sys.stderr.isatty(), leave=False
    ):
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


def summarize(rows: pd.DataFrame) -> pd.DataFrame:
    """Per condition: the mean over seeds and test volumes, their std (ddof=1, 0 for one score), the
    crossed seeds-by-volumes 95 % interval (:func:`smug.evaluation.statistics.mean_interval`), the slices of
    one seed and the number of seeds.

    Args:
        rows: per-volume rows with :data:`ROW_COLUMNS`; within a condition every seed must score the
            same volumes (the crossed design the interval assumes).

    Returns:
        one row per (model, perturbation, level, metric) with :data:`TABLE_COLUMNS`.

    Raises:
        ValueError: a column missing, or a seed lacking a volume another seed has (named).
    """
    missing = set(ROW_COLUMNS) - set(rows.columns)
    if missing:
        raise ValueError(f"per-volume rows lack column(s) {', '.join(sorted(missing))}")
    out = []
    for key, group in rows.groupby(CONDITION, sort=True):
        scores = seed_volume_table(group, dict(zip(CONDITION, key)))
        estimate = mean_interval(scores.to_numpy())
        values = scores.to_numpy().ravel()
        first_seed = group[group["seed"] == scores.index[0]]
        out.append(
            {
                **dict(zip(CONDITION, key)),
                "mean": estimate.effect,
                "std": values.std(ddof=1) if len(values) > 1 else 0.0,
                "ci_low": estimate.ci_low,
                "ci_high": estimate.ci_high,
                "n_slices": int(first_seed["n_slices"].sum()),
                "n_seeds": estimate.n_seeds,
            }
        )
    return pd.DataFrame(out, columns=TABLE_COLUMNS)


def seed_volume_table(rows: pd.DataFrame, condition: dict | str = "") -> pd.DataFrame:
    """One condition's scores as a ``(seeds, volumes)`` table, both sorted.

    Raises:
        ValueError: a (seed, volume) scored twice, or a seed lacking a volume another seed has,
            naming the condition.
    """
    if rows.duplicated(["seed", "volume"]).any():
        raise ValueError(f"{condition}: a (seed, volume) is scored twice")
    table = rows.pivot(index="seed", columns="volume", values="value").sort_index().sort_index(axis=1)
    if table.isna().any().any():
        gaps = [
            f"seed {seed} lacks {', '.join(table.columns[table.loc[seed].isna()])}"
            for seed in table.index
            if table.loc[seed].isna().any()
        ]
        raise ValueError(f"{condition}: every seed must score the same volumes, but {'; '.join(gaps)}")
    return table.astype(float)


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
