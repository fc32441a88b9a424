"""Which volumes make up each split: indexing a fastMRI folder and writing volume lists.

A split (``train``, ``val``, ``test`` of one anatomy) is a plain text file with one volume path per
line. The pipeline's scripts read it as ``@list.txt`` (:func:`smug.utils.cli.parse_args`), so the
same scripts take explicit files on the command line and thousands of real fastMRI volumes from a
list. The index of a fastMRI folder validates every volume once, so a corrupt download is named
before any job reads it.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Sequence

import pandas as pd

from smug.data.fastmri_io import FastMRIFormatError, VolumeInfo, VolumeLimits, inspect_volume
from smug.utils import atomic_path

INDEX_COLUMNS = [
    "fname",
    "path",
    "challenge",
    "anatomy",
    "acquisition",
    "num_slices",
    "num_coils",
    "height",
    "width",
    "has_target",
]


def index_volumes(
    folder: str | os.PathLike, challenge: str, limits: VolumeLimits | None = None
) -> pd.DataFrame:
    """Validate every ``*.h5`` volume in ``folder`` and describe it, one row per volume.

    Args:
        folder: a fastMRI split folder (e.g. ``multicoil_val/`` as extracted from its archive).
        challenge: ``singlecoil`` or ``multicoil``; every volume must be of this challenge.
        limits: largest declared shapes accepted (None: any).

    Returns:
        rows sorted by file name with the columns of :data:`INDEX_COLUMNS`; ``path`` is absolute.

    Raises:
        FastMRIFormatError: a volume is not a valid fastMRI file, of the other challenge, or beyond
            ``limits``.
        ValueError: the folder is missing or holds no ``.h5`` file.
    """
    root = Path(folder)
    if not root.is_dir():
        raise ValueError(f"fastMRI folder {root} does not exist")
    paths = sorted(root.glob("*.h5"))
    if not paths:
        raise ValueError(f"fastMRI folder {root} holds no .h5 volumes")
    rows = []
    for path in paths:
        info = validate_volume(path, limits)
        if info.challenge != challenge:
            raise FastMRIFormatError(
                path, f"is a {info.challenge} volume but the config's challenge is {challenge}"
            )
        rows.append(
            {
                "fname": path.name,
                "path": str(path.resolve()),
                "challenge": info.challenge,
                "anatomy": info.anatomy,
                "acquisition": info.attrs.get("acquisition", ""),
                "num_slices": info.num_slices,
                "num_coils": info.num_coils,
                "height": info.kspace_shape[-2],
                "width": info.kspace_shape[-1],
                "has_target": info.recon_key is not None,
            }
        )
    return pd.DataFrame(rows, columns=INDEX_COLUMNS)


def select_volumes(
    index: pd.DataFrame, start: int, count: int | None, anatomy: str | None = None
) -> list[Path]:
    """Volumes ``start .. start + count`` of an index (in file-name order), optionally of one anatomy.

    Two splits drawn from the same folder (validation and test volumes from fastMRI's ``*_val``)
    stay disjoint when their ranges do.

    Raises:
        ValueError: the range is empty or runs past the end, or a chosen volume has no target.
    """
    rows = index if anatomy is None else index[index["anatomy"] == anatomy]
    rows = rows.sort_values("fname")
    if start < 0 or (count is not None and count < 1):
        raise ValueError(f"volume range start={start}, count={count} is empty")
    stop = len(rows) if count is None else start + count
    if stop > len(rows) or start >= len(rows):
        raise ValueError(
            f"volume range [{start}, {stop}) asks for more volumes than the index's {len(rows)}"
            + (f" {anatomy} volumes" if anatomy else "")
        )
    chosen = rows.iloc[start:stop]
    without_target = chosen[~chosen["has_target"].astype(bool)]
    if len(without_target):
        raise ValueError(
            f"{without_target['fname'].iloc[0]} has no ground truth (a test/challenge file); "
            "training and evaluation need the *_train or *_val archives"
        )
    return [Path(p) for p in chosen["path"]]


def validate_volume(path: str | os.PathLike, limits: VolumeLimits | None = None) -> VolumeInfo:
    """Validate one volume from its metadata alone (see :func:`smug.data.fastmri_io.inspect_volume`) and
    check its declared shapes against ``limits`` before any job reads its arrays."""
    info = inspect_volume(path)
    if limits is not None:
        limits.check(info)
    return info


def add_volume_limits_argument(parser: argparse.ArgumentParser) -> None:
    """``--volume-limits SLICES COILS HEIGHT WIDTH`` (the pipeline passes ``data.volume_limits``)."""
    parser.add_argument(
        "--volume-limits",
        nargs=4,
        type=int,
        metavar=("SLICES", "COILS", "HEIGHT", "WIDTH"),
        help="refuse volumes declaring more slices, coils or k-space rows/columns (default: no limit)",
    )


def volume_limits_from(args: argparse.Namespace) -> VolumeLimits | None:
    return None if args.volume_limits is None else VolumeLimits(*args.volume_limits)


def write_volume_list(path: str | os.PathLike, volumes: Sequence[str | os.PathLike]) -> None:
    """Write one volume path per line (the ``@list.txt`` the scripts read)."""
    if not volumes:
        raise ValueError(f"volume list {path} would be empty")
    with atomic_path(path) as tmp:
        tmp.write_text("".join(f"{v}\n" for v in volumes))
