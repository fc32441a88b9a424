"""Benchmark sizes, timing, host-sync counting and the rows every benchmark reports."""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from dataclasses import asdict, dataclass, fields
from typing import Any, Callable, Iterator, Sequence

import torch

from smug.training import PerformanceOptions

Row = dict[str, Any]

THROUGHPUT_COLUMNS = (
    "name", "seconds", "slices", "slices_per_s", "detail", "device", "amp", "channels_last",
    "batch", "coils", "height", "width", "denoiser", "chans", "unrolls", "samples",
)  # fmt: skip
TARGET_COLUMNS = ("name", "measured", "goal", "target", "ok", "unit", "detail")

# Python-level reads of a tensor's value; on a GPU each one waits for the device.
_HOST_READS = ("__bool__", "item", "tolist", "__int__", "__float__", "__index__", "numpy")


@dataclass(frozen=True)
class BenchSize:
    """Problem and network sizes of one benchmark run.

    Attributes:
        batch: slices per call.
        coils: receiver coils of the multicoil problems (single-coil ones use 1).
        height, width: image (and k-space) size.
        denoiser: "dncnn", "didn" or "unet".
        chans: the denoiser's feature channels.
        depth: DnCNN layers, DIDN down-up blocks or U-Net pooling stages.
        unrolls: MoDL/SMUG unrolls N.
        samples: SMUG smoothing draws M.
        lam: data-consistency weight.
        cg_max_iter, cg_tol: the models' conjugate-gradient settings.
        loader_slices: slices in the synthetic volume the data-loader benchmark reads.
        warmup, repeats: untimed and timed calls per measurement.
    """

    batch: int
    coils: int
    height: int
    width: int
    denoiser: str
    chans: int
    depth: int
    unrolls: int
    samples: int
    lam: float = 0.05
    cg_max_iter: int = 10
    cg_tol: float = 1e-6
    loader_slices: int = 8
    warmup: int = 1
    repeats: int = 5

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("denoiser", "cg_tol", "warmup"):
                continue
            if not (isinstance(value, (int, float)) and value > 0):
                raise ValueError(f"BenchSize.{f.name} must be positive, got {value!r}")
        if self.warmup < 0 or self.cg_tol < 0:
            raise ValueError(f"BenchSize: warmup and cg_tol must be >= 0, got {self.warmup}, {self.cg_tol}")

    def denoiser_args(self) -> dict[str, int]:
        if self.denoiser == "dncnn":
            return {"num_chans": self.chans, "num_layers": self.depth}
        if self.denoiser == "didn":
            return {"num_chans": self.chans, "num_dubs": self.depth}
        if self.denoiser == "unet":
            return {"chans": self.chans, "num_pool_layers": self.depth}
        raise ValueError(f"unknown denoiser {self.denoiser!r} in BenchSize; valid: dncnn, didn, unet")


SIZES: dict[str, BenchSize] = {
    # Seconds on a laptop CPU: for tests and a smoke run of the script.
    "tiny": BenchSize(
        batch=2, coils=2, height=16, width=16, denoiser="dncnn", chans=4, depth=3, unrolls=2, samples=2,
        cg_max_iter=10, loader_slices=4, warmup=1, repeats=2,
    ),
    # The embedded pipeline of config/config.yaml: 64x64 synthetic slices, 4 coils, DIDN 16/1, N=4, M=4.
    "default": BenchSize(
        batch=4, coils=4, height=64, width=64, denoiser="didn", chans=16, depth=1, unrolls=4, samples=4,
        loader_slices=16, repeats=9,
    ),
    # The side-by-side problem with the authors' code (../shared/tools/side_by_side_smug.py): one
    # 128x128 slice, 8 coils, DIDN 64/2, N=8, M=10, lambda 1, CG to 1e-6.
    "official": BenchSize(
        batch=1, coils=8, height=128, width=128, denoiser="didn", chans=64, depth=2, unrolls=8, samples=10,
        lam=1.0, cg_max_iter=100, cg_tol=1e-6, loader_slices=8, warmup=1, repeats=3,
    ),
    # Paper scale: fastMRI knee crops (320x320, 15 coils), DIDN 64/2 (3.37 M parameters), N=8, M=10.
    "paper": BenchSize(
        batch=1, coils=15, height=320, width=320, denoiser="didn", chans=64, depth=2, unrolls=8, samples=10,
        loader_slices=8, repeats=5,
    ),
}  # fmt: skip


def bench_size(name: str) -> BenchSize:
    """The preset called ``name`` (see :data:`SIZES`)."""
    if name not in SIZES:
        raise ValueError(f"unknown benchmark size {name!r}; valid: {', '.join(SIZES)}")
    return SIZES[name]


def time_call(
    fn: Callable[[], Any], *, warmup: int = 1, repeats: int = 5, device: torch.device | str = "cpu"
) -> float:
    """Fastest wall-clock seconds of ``fn()`` over ``repeats`` calls, after ``warmup`` untimed calls.

    The fastest, as ``timeit`` advises: other processes only ever add time, so the minimum is the
    most repeatable estimate and ratios of minima are stable on a shared laptop. On CUDA the device
    is synchronised before and after every timed call, so the time covers the kernels ``fn``
    launched and not just their launch.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"time_call needs repeats >= 1 and warmup >= 0, got {repeats}, {warmup}")
    device = torch.device(device)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        sync()
        tic = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - tic)
    return min(times)


def time_sized(fn: Callable[[], Any], size: BenchSize, device: torch.device) -> float:
    """:func:`time_call` with the warmup and repeats of ``size``."""
    return time_call(fn, warmup=size.warmup, repeats=size.repeats, device=device)


def time_interleaved(fns: Sequence[Callable[[], Any]], size: BenchSize, device: torch.device) -> list[float]:
    """Fastest seconds of each of ``fns``, timed in turn within every round, so that a ratio of
    them compares calls made under the same machine load rather than minutes apart."""
    for fn in fns:
        for _ in range(size.warmup):
            fn()
    best = [math.inf] * len(fns)
    for _ in range(size.repeats):
        for i, fn in enumerate(fns):
            best[i] = min(best[i], time_call(fn, warmup=0, repeats=1, device=device))
    return best


def throughput_row(
    name: str,
    seconds: float,
    slices: int,
    size: BenchSize,
    device: torch.device,
    options: PerformanceOptions,
    detail: str = "",
) -> Row:
    """A row of ``throughput.csv`` (:data:`THROUGHPUT_COLUMNS`): ``slices`` done in ``seconds``."""
    return {
        "name": name,
        "seconds": seconds,
        "slices": slices,
        "slices_per_s": slices / seconds,
        "detail": detail,
        "device": str(device),
        "amp": options.amp,
        "channels_last": options.channels_last,
        **{k: v for k, v in asdict(size).items() if k in THROUGHPUT_COLUMNS},
    }


def target_row(name: str, measured: float, goal: str, target: float, unit: str, detail: str) -> Row:
    """A row of ``targets.csv`` (:data:`TARGET_COLUMNS`): ``measured`` against ``goal`` (``<=`` or
    ``>=``) ``target``. A missed target is reported here, never raised."""
    ok = measured <= target if goal == "<=" else measured >= target
    return {
        "name": name,
        "measured": float(measured),
        "goal": goal,
        "target": float(target),
        "ok": bool(ok),
        "unit": unit,
        "detail": detail,
    }


@dataclass
class HostSyncCount:
    """What :func:`count_host_syncs` saw: Python reads of tensor values, and CUDA syncs (None on CPU)."""

    host_reads: int = 0
    cuda_syncs: int | None = None


@contextlib.contextmanager
def count_host_syncs(device: torch.device | str = "cpu") -> Iterator[HostSyncCount]:
    """Count the reads of tensor values on the host (``bool(t)``, ``t.item()``, ...) inside the block.

    Each such read makes the host wait for the device, so a loop that never reads stays
    asynchronous. On CUDA torch's sync debug mode additionally reports every synchronisation,
    including ones inside torch, as warnings that are counted in ``cuda_syncs``.
    The methods are patched on ``torch.Tensor`` for the block only (not thread-safe).
    """
    count = HostSyncCount()
    saved = {name: torch.Tensor.__dict__.get(name) for name in _HOST_READS}
    for name in _HOST_READS:
        setattr(torch.Tensor, name, _counting(getattr(torch.Tensor, name), count))
    cuda = torch.device(device).type == "cuda"
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if cuda:
                previous_mode = torch.cuda.get_sync_debug_mode()
                torch.cuda.set_sync_debug_mode("warn")
            try:
                yield count
            finally:
                if cuda:
                    torch.cuda.set_sync_debug_mode(previous_mode)
        if cuda:
            count.cuda_syncs = sum("synchroniz" in str(w.message).lower() for w in caught)
    finally:
        for name, original in saved.items():
            if original is None:
                delattr(torch.Tensor, name)
            else:
                setattr(torch.Tensor, name, original)


def _counting(method: Callable, count: HostSyncCount) -> Callable:
    def counted(self, *args, **kwargs):
        count.host_reads += 1
        return method(self, *args, **kwargs)

    return counted
