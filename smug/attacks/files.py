"""The HDF5 file of an attack: the perturbations of every test slice at each strength, and how they were made."""

from __future__ import annotations

import os
from typing import Any

import h5py
import numpy as np
import torch

from smug.data import open_hdf5
from smug.utils import atomic_path

# Attributes every saved attack carries, so a result file says how it was made.
ATTACK_ATTRS = (
    "eps",
    "norm",
    "steps",
    "step_size",
    "seed",
    "domain",
    "relative",
    "loss_target",
    "eot_samples",
    "model",
)


def save_attack(path: str | os.PathLike, levels: list[tuple[torch.Tensor, dict[str, Any]]]) -> None:
    """Write the perturbations of one attack at one or more strengths to HDF5, atomically.

    Layout: root datasets ``fname`` and ``slice`` name the slices (shared by all levels); group
    ``level_{i}`` per strength holds the complex64 dataset ``perturbation`` ``(B, ...)`` and, as
    attributes, the keys of :data:`ATTACK_ATTRS` (None stored as an empty attribute).

    Args:
        path: output ``.h5`` file.
        levels: ``(delta, attrs)`` per strength; every ``attrs`` has the keys of
            :data:`ATTACK_ATTRS` plus ``fname`` (B file names) and ``slice`` (B slice indices), the same
            for every level; further scalar or string keys are stored as attributes.
    """
    if not levels:
        raise ValueError(f"save_attack({os.fspath(path)}): no perturbation levels given")
    fnames = slices = None
    for delta, attrs in levels:
        missing = [key for key in (*ATTACK_ATTRS, "fname", "slice") if key not in attrs]
        if missing:
            raise ValueError(f"save_attack({os.fspath(path)}): attrs lacks {', '.join(missing)}")
        if not torch.is_tensor(delta) or not torch.is_complex(delta):
            raise ValueError(f"save_attack({os.fspath(path)}): delta must be a complex tensor")
        level_fnames = [str(name) for name in attrs["fname"]]
        level_slices = np.asarray(attrs["slice"], dtype=np.int64).reshape(-1)
        if len(level_fnames) != delta.shape[0] or len(level_slices) != delta.shape[0]:
            raise ValueError(
                f"save_attack({os.fspath(path)}): {len(level_fnames)} fname and {len(level_slices)} slice "
                f"entries for {delta.shape[0]} perturbations"
            )
        if fnames is None:
            fnames, slices = level_fnames, level_slices
        elif fnames != level_fnames or not np.array_equal(slices, level_slices):
            raise ValueError(f"save_attack({os.fspath(path)}): levels perturb different slices")
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            f.create_dataset("fname", data=fnames, dtype=h5py.string_dtype())
            f.create_dataset("slice", data=slices)
            for i, (delta, attrs) in enumerate(levels):
                group = f.create_group(f"level_{i}")
                group.create_dataset("perturbation", data=delta.detach().cpu().numpy().astype(np.complex64))
                for key, value in attrs.items():
                    if key not in ("fname", "slice"):
                        group.attrs[key] = h5py.Empty("f4") if value is None else value


def load_attack(path: str | os.PathLike) -> list[tuple[torch.Tensor, dict[str, Any]]]:
    """Read a file written by :func:`save_attack`.

    Returns:
        ``[(delta, attrs), ...]`` in level order: complex64 tensors and dicts of plain Python values
        with ``fname`` a list of str and ``slice`` a list of int.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file is not an attack file (corrupt, or lacking a dataset or attribute).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"attack file not found: {path}")
    levels = []
    try:
        with open_hdf5(path) as f:  # refuses links and storage in other files
            fnames = [str(name) for name in f["fname"].asstr()[()]]
            slices = [int(index) for index in f["slice"][()]]
            names = sorted((k for k in f if k.startswith("level_")), key=lambda k: int(k.split("_")[1]))
            for name in names:
                group = f[name]
                delta = torch.from_numpy(np.asarray(group["perturbation"][()], dtype=np.complex64))
                attrs = {key: _plain(value) for key, value in group.attrs.items()}
                levels.append((delta, {**attrs, "fname": fnames, "slice": slices}))
    except (OSError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable attack file ({exc})") from exc
    if not levels:
        raise ValueError(f"{path}: attack file holds no perturbation level")
    for _, attrs in levels:
        missing = [key for key in ATTACK_ATTRS if key not in attrs]
        if missing:
            raise ValueError(f"{path}: attack file lacks attribute(s) {', '.join(missing)}")
    return levels


def _plain(value: Any) -> Any:
    if isinstance(value, h5py.Empty):
        return None
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value
