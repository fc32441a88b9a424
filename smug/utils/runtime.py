"""Run-time plumbing shared by every script: device choice, threads and CPU runtime settings,
seeding, provenance, logging setup."""

from __future__ import annotations

import ctypes
import ctypes.util
import importlib.metadata
import json
import logging
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

LOG = logging.getLogger("smug")

_PROVENANCE_PACKAGES = ("torch", "numpy", "h5py", "scikit-image", "snakemake", "smug")


def select_device(name: str = "auto") -> torch.device:
    """``auto`` -> cuda when available, else cpu; ``cuda`` without a GPU is an error, not a fallback."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda requested but torch sees no CUDA device")
    if name not in ("cpu", "cuda"):
        raise ValueError(f"unknown device {name!r}; use auto, cpu or cuda")
    device = torch.device(name)
    LOG.info(
        "device %s (torch.cuda.device_count()=%d, CUDA_VISIBLE_DEVICES=%s)",
        device,
        torch.cuda.device_count(),
        os.environ.get("CUDA_VISIBLE_DEVICES", "<unset>"),
    )
    return device


def limit_threads(num_threads: int | None) -> None:
    """Cap torch's intra-op threads at what the scheduler granted (Snakemake ``threads``, which
    the SLURM profile turns into ``--cpus-per-task``); ``None`` keeps torch's default.

    Without the cap every job starts one thread per core of the machine, so two local jobs or
    a job sharing a node oversubscribe the cores.
    """
    if num_threads is None:
        return
    if num_threads < 1:
        raise ValueError(f"--threads must be at least 1, got {num_threads}")
    torch.set_num_threads(num_threads)
    LOG.info("torch threads %d", torch.get_num_threads())


def setup_compute(num_threads: int | None) -> None:
    """What every script does before computing: cap torch's threads (:func:`limit_threads`) and
    apply the CPU runtime settings of :func:`tune_cpu_runtime`."""
    limit_threads(num_threads)
    changed = tune_cpu_runtime()
    if changed:
        LOG.info("CPU runtime: %s", ", ".join(changed))


# glibc's mallopt parameters, and the largest mmap threshold it accepts on 64-bit systems.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLD_MAX = 32 * 1024 * 1024


def set_malloc_thresholds(mmap_threshold: int, trim_threshold: int) -> bool:
    """Set glibc's mmap threshold (allocations at least this large get their own pages, unmapped on
    free) and trim threshold (free memory above this at the heap's top goes back to the kernel), both
    in bytes, for the rest of the process. Fixing them stops glibc's own adjustment, which raises the
    mmap threshold to the size of any block freed (up to 32 MiB). Returns whether both were set
    (False where the C library is not glibc)."""
    if not sys.platform.startswith("linux"):
        return False
    libc_name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(libc_name) if libc_name else None
    except OSError:
        return False
    if libc is None or not hasattr(libc, "mallopt"):
        return False
    return bool(
        libc.mallopt(_M_MMAP_THRESHOLD, mmap_threshold) and libc.mallopt(_M_TRIM_THRESHOLD, trim_threshold)
    )


def tune_cpu_runtime() -> list[str]:
    """Process-wide CPU settings that change speed, never results beyond rounding of denormals.

    - Denormal floats are flushed to zero (``torch.set_flush_denormal``): convolutions on values
      below 1e-38 are several times slower, and such values carry no signal here.
    - glibc serves each allocation above its mmap threshold (128 KiB at first) with fresh pages
      from the kernel and unmaps them on free, so every batch of activations of a few MB page-faults
      again; smoothing's M-fold batches made SMUG's forward pass 30-100 % slower, and unstably so.
      Raising the threshold (to 32 MiB) and the trim threshold keeps those blocks in the heap. The
      price is host memory: the heap keeps freed blocks, so the resident peak exceeds the peak of
      live tensors (at the paper size a bounded Weighted SMUG step's by several GB;
      ``scripts/bench.py --case memory --cpu-memory``).

    Returns:
        what was changed, for the log (empty where nothing applies, e.g. not glibc).
    """
    changed = []
    if torch.set_flush_denormal(True):
        changed.append("denormals flushed to zero")
    if set_malloc_thresholds(_MMAP_THRESHOLD_MAX, 8 * _MMAP_THRESHOLD_MAX):
        changed.append(f"malloc mmap threshold {_MMAP_THRESHOLD_MAX >> 20} MiB")
    return changed


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA) and numpy's legacy global RNG, for code that draws from them."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)


def use_deterministic_algorithms() -> None:
    """Bitwise-repeatable runs on CPU; on CUDA the deterministic kernels (slower, still exact)."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    # Deterministic mode also fills every new tensor with NaN by default, a debugging aid against
    # reads of uninitialised memory that changes no result of correct code; on CPU it cost 13 % of
    # SMUG's training time (62.8 -> 54.5 s on one core: every activation buffer written twice).
    torch.utils.deterministic.fill_uninitialized_memory = False


def git_commit(cwd: str | os.PathLike | None = None) -> str:
    """The checkout's commit (with ``-dirty`` if modified), or ``unknown`` outside git."""
    cwd = cwd or Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("-dirty" if dirty else "")


def provenance() -> dict[str, Any]:
    """What produced a result: commit, package versions, interpreter and host."""
    versions = {}
    for package in _PROVENANCE_PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "git_commit": git_commit(),
        "packages": versions,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cuda": torch.version.cuda,
    }


def dump_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, default=str)


def epoch_seed(seed: int, epoch: int, stream: int, rank: int = 0) -> int:
    """Independent, reproducible seeds per (run seed, epoch, purpose, and the rank of a
    data-parallel process; rank 0 draws what a single process draws)."""
    entropy = [seed, epoch, stream] if rank == 0 else [seed, epoch, stream, rank]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])
