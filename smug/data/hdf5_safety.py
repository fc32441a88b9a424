"""Opening any HDF5 file the pipeline reads, safely: read-only, and refused (naming the file) when
missing, unreadable, or when its data lie partly in other files (external links, external raw
storage, virtual datasets), so a crafted volume cannot make a job read, or publish, local files.
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py


class FastMRIFormatError(ValueError):
    """A file that is missing or not a valid fastMRI (or sensitivity-map) volume."""

    def __init__(self, path: str | os.PathLike, problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


def open_hdf5(path: str | os.PathLike) -> h5py.File:
    """Open any HDF5 file read-only: the one opener of every HDF5 file the pipeline reads.

    A missing or unreadable file raises FastMRIFormatError naming it, as does one whose data lie
    partly in other files (see :func:`check_self_contained`), checked before anything is read.
    """
    file_path = Path(path)
    if not file_path.is_file():
        raise FastMRIFormatError(file_path, "file not found")
    try:
        hf = h5py.File(file_path, "r")
    except OSError as exc:
        # h5py reports non-HDF5 and truncated files alike as OSError.
        raise FastMRIFormatError(file_path, f"not a readable HDF5 file ({exc})") from None
    try:
        check_self_contained(hf, file_path)
    except OSError as exc:
        hf.close()
        raise FastMRIFormatError(file_path, f"corrupt HDF5 content ({exc})") from None
    except BaseException:
        hf.close()
        raise
    return hf


def check_self_contained(hf: h5py.File, path: str | os.PathLike) -> None:
    """Refuse an HDF5 file that reads data from other files.

    HDF5 lets a file point elsewhere: an external link (``h5py.ExternalLink``) opens another HDF5
    file by path, a dataset with external raw storage reads its bytes from any file (``/etc/passwd``
    as ``kspace``), and a virtual dataset maps other files' datasets. A crafted volume could so make
    a job read local files and publish them in its reconstructions. No fastMRI or pipeline file
    uses any of them.

    The whole tree is walked by link, reading each link's kind before following it, so an
    external link is never followed; soft links stay inside the file and are not followed (their
    targets are walked where they are). Hard-link cycles are visited once. No data is read.

    Raises:
        FastMRIFormatError: naming the file and the offending link or dataset.
    """
    seen: set[h5py.h5g.GroupID] = set()

    def walk(group: h5py.Group, prefix: str) -> None:
        seen.add(group.id)
        for name in group:
            where = f"{prefix}{name}"
            link = group.get(name, getlink=True)
            if isinstance(link, h5py.ExternalLink):
                raise FastMRIFormatError(
                    path,
                    f"{where!r} is an external link to {link.filename}:{link.path}; "
                    "refused: links to other files",
                )
            if isinstance(link, h5py.SoftLink):
                continue
            if not isinstance(link, h5py.HardLink):
                raise FastMRIFormatError(path, f"{where!r} is a link of unknown kind; refused")
            obj = group[name]
            if isinstance(obj, h5py.Group) and obj.id not in seen:
                walk(obj, f"{where}/")
            elif isinstance(obj, h5py.Dataset):
                _check_dataset_storage(obj, path, where)

    walk(hf["/"], "/")


def _check_dataset_storage(dataset: h5py.Dataset, path: str | os.PathLike, where: str) -> None:
    """Refuse a dataset whose data lie in other files (external raw storage, virtual dataset)."""
    if dataset.is_virtual:
        sources = sorted({source.file_name for source in dataset.virtual_sources()})
        raise FastMRIFormatError(
            path, f"dataset {where!r} is a virtual dataset mapping {sources}; refused: data in other files"
        )
    plist = dataset.id.get_create_plist()
    if plist.get_external_count() > 0:
        count = plist.get_external_count()
        files = [plist.get_external(i)[0].decode("utf-8", errors="replace") for i in range(count)]
        raise FastMRIFormatError(
            path, f"dataset {where!r} stores its data in external files {files}; refused: data in other files"
        )
