"""Files in and out: atomic output, and PyTorch files read without ever running their code.

Every writer in the pipeline goes through :func:`atomic_path` (or :func:`atomic_dir`), so a killed
job never leaves a file that Snakemake (or a reviewer) would take for a finished output. Every
``.pt`` file (models, generators, checkpoints) is read by :func:`load_torch_file`, so one exchanged
between researchers cannot execute code when it is opened.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pickle
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator, Sequence


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    The temporary file lives in the same directory, so the final ``os.replace`` is atomic on POSIX
    file systems. On any exception the temporary file is removed and ``path`` is left untouched.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".part", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    # mkstemp creates 0600 files; results should get the permissions any new file would.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        yield tmp
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``path``; it replaces ``path`` only if the block
    succeeds, so a failed run leaves neither a half-filled folder nor a stale one that looks current."""
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".part", dir=final.parent))
    try:
        yield tmp
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# Files up to this size are hashed whole. Larger ones (fastMRI volumes and their sensitivity maps,
# hundreds of MB each, tens of GB per split) are fingerprinted by size, modification time and their
# first and last MiB, so that starting a training run never reads the whole data set once more.
WHOLE_DIGEST_BYTES = 64 << 20
_EDGE_BYTES = 1 << 20


def file_digest(path: str | os.PathLike) -> str:
    """A SHA-256 hex digest that changes whenever the file's content does.

    Small files are hashed whole; a file over ``WHOLE_DIGEST_BYTES`` by its size, its modification
    time (ns) and its first and last MiB: rewriting such a file changes its modification time.
    """
    path = Path(path)
    stat = path.stat()
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        if stat.st_size <= WHOLE_DIGEST_BYTES:
            for block in iter(lambda: handle.read(_EDGE_BYTES), b""):
                digest.update(block)
        else:
            digest.update(f"{stat.st_size}:{stat.st_mtime_ns}:".encode())
            digest.update(handle.read(_EDGE_BYTES))
            handle.seek(-_EDGE_BYTES, os.SEEK_END)
            digest.update(handle.read(_EDGE_BYTES))
    return digest.hexdigest()


def files_digest(paths: Sequence[str | os.PathLike]) -> str:
    """One digest of an ordered list of files: their names and contents (:func:`file_digest`)."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(f"{Path(path).name}\0{file_digest(path)}\n".encode())
    return digest.hexdigest()


class UnsafeFileError(ValueError):
    """A PyTorch file that holds more than tensors and plain data: loading it could run code."""


def load_torch_file(path: str | os.PathLike, map_location: Any = "cpu", what: str = "file") -> Any:
    """``torch.load`` with ``weights_only=True``: only tensors, numbers, strings and containers are
    rebuilt, so nothing in the file can execute.

    Raises:
        FileNotFoundError: no such file.
        UnsafeFileError: the file needs other objects (e.g. a crafted pickle); it is not opened further.
        ValueError: the file is truncated or not a PyTorch file. Every message names ``what`` and ``path``.
    """
    import torch  # here, so that writing files (the synthetic data, the DAG's helpers) never loads torch

    if not Path(path).is_file():
        raise FileNotFoundError(f"{what} {path} does not exist")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise UnsafeFileError(
            f"refusing {what} {path}: it holds {_unsafe_part(exc)}, not only tensors and plain data, "
            "and loading it could execute code"
        ) from None
    except Exception as exc:  # torch raises RuntimeError, EOFError, OSError... for damaged files
        raise ValueError(
            f"cannot read {what} {path}: {_first_sentence(exc)} (truncated, or not a PyTorch file)"
        ) from None


def _unsafe_part(exc: BaseException) -> str:
    """The object the safe unpickler refused, from torch's message ('... GLOBAL posix.system ...')."""
    found = re.search(r"GLOBAL (\S+)", str(exc))
    return f"the object {found.group(1)}" if found else "objects the safe loader does not rebuild"


def _first_sentence(exc: BaseException) -> str:
    text = str(exc).strip()
    return re.split(r"(?<=\.)\s|\n", text, maxsplit=1)[0] if text else type(exc).__name__
