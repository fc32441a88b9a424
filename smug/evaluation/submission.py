"""Reconstructing your own fastMRI files with a saved method, in fastMRI's submission layout.

One output file per input volume, of the same name, holding ``reconstruction`` float32
``(slices, 320, 320)`` (the magnitude, centre-cropped as fastMRI's leaderboard expects, on the
scale of the file's own data), so fastMRI's ``evaluate.py`` and leaderboard tooling accept it.

Files with a target (train/val) are undersampled retrospectively with the given column mask; test
and challenge files are reconstructed from their own stored ``mask`` and k-space, and never scored.
Multicoil files need sensitivity maps: given folders are searched first, missing maps are
estimated with ESPIRiT (:mod:`smug.data.sens_maps`) and cached, on the recon grid for files with a target
and on the stored k-space grid for test files.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any, Sequence

import h5py
import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from smug.data import SliceDataset, collate, select_slices
from smug.data import FastMRIFormatError
from smug.data import VolumeInfo, check_recon_fits, inspect_volume
from smug.data import ESTIMATOR, estimate_volume_maps, maps_file_matches, write_sens_maps
from smug.utils import atomic_path
from smug.mri import load_mask, center_crop_or_pad
from smug.models import load_method
from smug.models.reconstruct import reconstruct

LOG = logging.getLogger(__name__)
SUBMISSION_SIZE = (320, 320)  # fastMRI's leaderboard crop


def reconstruct_files(
    *,
    model: str | os.PathLike,
    files: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    mask: str | os.PathLike | None,
    sens_dirs: Sequence[str | os.PathLike] = (),
    espirit: dict[str, Any],
    maps_cache: str | os.PathLike | None = None,
    device: torch.device = torch.device("cpu"),
    batch_size: int = 4,
    seed: int = 0,
) -> list[Path]:
    """Reconstruct each fastMRI file with the method saved at ``model``; returns the files written.

    Args:
        model: any ``model.pt`` the pipeline saves (trained networks, CS, untrained, zero-filled).
        files: fastMRI HDF5 volumes, single-coil or multicoil (one challenge).
        out_dir: output folder; ``out_dir/{file name}`` per volume, written atomically.
        mask: column mask ``.npz`` (``scripts/make_masks.py``) of the recon width, for files with a
            target; test files use their own ``mask``.
        sens_dirs: folders of existing sensitivity-map files, searched in order.
        espirit: ``num_acs``, ``kernel_size``, ``threshold``, ``crop`` of the ESPIRiT estimate (a
            test file calibrates on at most its ``num_low_frequency`` fully sampled columns).
        maps_cache: folder where estimated maps are kept (default ``out_dir/.sens_maps``).
        device, batch_size, seed: where to run, slices per forward pass, noise of randomised models.

    Raises:
        FastMRIFormatError: a file is not a valid fastMRI volume, mixes challenges, or does not suit
            the model (the other challenge, or a width the network cannot take).
        ValueError: a file with a target but no ``mask``, maps that cannot be estimated, or an
            output that would replace an input or another output (checked before any file is read
            beyond its metadata, so nothing is written).
    """
    net, record = load_method(model, device)
    infos = [inspect_volume(path) for path in files]
    _check_challenge(infos, record, model)
    for info in infos:
        check_recon_fits(info)
    out_dir = Path(out_dir)
    cache = Path(maps_cache) if maps_cache is not None else out_dir / ".sens_maps"
    _check_outputs(_planned_outputs(infos, out_dir, cache, sens_dirs), [info.path for info in infos])
    column_mask = load_mask(mask) if mask is not None else None
    written = []
    for info in tqdm(infos, desc="volumes", disable=not sys.stderr.isatty()):
        if info.has_target and column_mask is None:
            raise ValueError(f"{info.path}: has a target, so it is undersampled retrospectively; give --mask")
        maps_dirs = list(sens_dirs)
        if _needs_estimated_maps(info, sens_dirs):
            maps_dirs.append(_cached_maps(info, _maps_folder(info, cache), espirit))
        dataset = SliceDataset(
            select_slices([info.path], None),
            mask=column_mask if info.has_target else None,
            sens_dir=maps_dirs or None,
            allow_no_target=not info.has_target,
            mask_name=None if mask is None else str(mask),
        )
        images = _reconstruct_volume(net, dataset, info, device, batch_size, seed)
        path = out_dir / info.path.name
        with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
            f.create_dataset("reconstruction", data=images)
            f.attrs["model"] = str(model)
        LOG.info("%s: %d slices -> %s", info.path.name, len(images), path)
        written.append(path)
    return written


def _needs_estimated_maps(info: VolumeInfo, sens_dirs: Sequence[str | os.PathLike]) -> bool:
    """Multicoil volumes without maps in ``sens_dirs`` get ESPIRiT maps in the cache."""
    return info.challenge == "multicoil" and not any((Path(d) / info.path.name).is_file() for d in sens_dirs)


def _maps_folder(info: VolumeInfo, cache: Path) -> Path:
    """Cache folder of estimated maps: on the recon grid for files with a target, else the stored one."""
    return cache / ("recon" if info.has_target else "stored")


def _planned_outputs(
    infos: list[VolumeInfo], out_dir: Path, cache: Path, sens_dirs: Sequence[str | os.PathLike]
) -> list[tuple[Path, Path]]:
    """Every file a run would write, as ``(output, the input it comes from)``: the reconstruction
    and, for volumes that need them, the cached maps."""
    planned = [(out_dir / info.path.name, info.path) for info in infos]
    planned += [
        (_maps_folder(info, cache) / info.path.name, info.path)
        for info in infos
        if _needs_estimated_maps(info, sens_dirs)
    ]
    return planned


def _check_outputs(planned: list[tuple[Path, Path]], inputs: list[Path]) -> None:
    """Refuse, before anything is written, an output that is an input or that two inputs share.

    Outputs are named after their input, so ``--out-dir`` the input folder would replace raw k-space
    by its reconstruction, and two inputs of one name (from two folders) would overwrite each other.
    "The same file" covers symbolic and hard links (:func:`os.path.samefile`).

    Raises:
        ValueError: naming the output and the input(s) concerned.
    """
    for output, _ in planned:
        for given in inputs:
            if _same_file(output, given):
                raise ValueError(
                    f"{output}: writing it would replace the input file {given}; choose an --out-dir "
                    "(and --maps-cache) that holds none of the input files"
                )
    for i, (output, source) in enumerate(planned):
        for other_output, other_source in planned[:i]:
            if _same_file(output, other_output):
                raise ValueError(
                    f"{other_source} and {source} would both be written to {output} (outputs are named "
                    "after their input); reconstruct files of the same name into different --out-dir folders"
                )


def _same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file, through symbolic or hard links; either may not exist yet."""
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _check_challenge(infos: list[VolumeInfo], record: dict, model: str | os.PathLike) -> None:
    challenges = {info.challenge for info in infos}
    if len(challenges) > 1:
        raise FastMRIFormatError(
            infos[0].path, f"the files mix challenges ({', '.join(sorted(challenges))}); give one challenge"
        )
    trained_for = record.get("spec", {}).get("data", {}).get("challenge")
    if trained_for is not None and trained_for not in challenges:
        raise FastMRIFormatError(
            infos[0].path, f"is {infos[0].challenge} data, but {model} was trained on {trained_for} data"
        )


def _cached_maps(info: VolumeInfo, folder: Path, espirit: dict[str, Any]) -> Path:
    """Estimate (or reuse) the volume's ESPIRiT maps under ``folder``; returns ``folder``."""
    grid = info.kspace_shape[-2:] if not info.has_target else info.encoding.recon_size[:2]
    num_acs = espirit["num_acs"]
    if info.num_low_frequency is not None:
        num_acs = min(num_acs, info.num_low_frequency)  # a test file is sampled fully only there
    options = {k: espirit[k] for k in ("kernel_size", "threshold", "crop")}
    slices = list(range(info.num_slices))
    attrs = {
        "estimator": ESTIMATOR,
        "num_acs": num_acs,
        "grid": list(grid),
        "source": str(info.path),
        **options,
    }
    path = folder / info.path.name
    if not maps_file_matches(path, slices, attrs):
        LOG.info("%s: estimating sensitivity maps (ESPIRiT, %d calibration columns)", info.path.name, num_acs)
        maps = estimate_volume_maps(info.path, slices, grid, num_acs, **options)
        write_sens_maps(path, maps, slices, attrs)
    return folder


@torch.no_grad()
def _reconstruct_volume(
    net, dataset: SliceDataset, info: VolumeInfo, device, batch_size: int, seed: int
) -> np.ndarray:
    """Magnitudes ``(S, 320, 320)`` on the file's scale, in slice order."""
    generator = torch.Generator(device=device).manual_seed(seed)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate)
    slices = []
    for batch in loader:
        batch = batch.to(device)
        try:
            images = reconstruct(net, batch, generator)
        except RuntimeError as exc:  # a U-Net whose pooling does not divide the grid, say
            grid = tuple(batch.kspace.shape[-2:])
            raise FastMRIFormatError(
                info.path, f"the model cannot reconstruct a {grid} grid: {exc}"
            ) from None
        magnitudes = images.abs() * batch.scale.reshape(-1, 1, 1)
        slices.append(center_crop_or_pad(magnitudes, SUBMISSION_SIZE).cpu().numpy().astype(np.float32))
    return np.concatenate(slices)
