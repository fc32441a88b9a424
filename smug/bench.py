"""Speed as a measured property: throughput benchmarks, ratio targets, and Snakemake rule benchmarks.

Every benchmark times real library code (the models, data consistency, the PGD attack, the slice
dataset) at one :class:`BenchSize` and returns plain dict rows. Besides absolute throughput, a few
ratios state what the implementation promises, each measured within one run so the machine's speed
cancels out:

- ``smug_forward_overhead``: a SMUG forward costs no more than its parts, N batched denoiser
  passes over the M noisy copies plus N data-consistency steps (target <= 1.1): the M samples are
  one batch, not a Python loop.
- ``closed_form_dc_speedup``: single-coil data consistency in closed form beats the conjugate
  gradient solving the same system to the same tolerance (target >= 5).
- ``cg_host_syncs``: the batched multicoil CG waits on the device only at its ``check_every``
  convergence checks, never once per iteration (target <= ceil(max_iter / check_every)). On CPU
  nothing can be observed waiting, so the host reads of tensor values (``bool``, ``item``, ...)
  are counted while the solver runs; on CUDA torch's sync debug mode also reports the real syncs.
- ``pgd_step_overhead``: one PGD step costs about one forward+backward of the attacked model
  (target <= 1.3).
- ``loader_headroom``: the cached slice dataset delivers slices at least 10x faster than training
  consumes them (target >= 10).

Timings are the fastest of ``repeats`` calls after ``warmup`` calls (as ``timeit`` advises: other
processes only ever add time, so the minimum is the most repeatable estimate and ratios of minima
are stable on a shared laptop), with CUDA synchronised around each call. They are measurements, not
tests: a missed target is reported, never raised.
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import os
import statistics
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader

from smug.attacks import pgd_kspace_attack
from smug.data import Batch, SliceDataset, collate, select_slices
from smug.data_consistency import closed_form_dc, conjugate_gradient, data_consistency
from smug.io import atomic_path
from smug.models.modl import MoDL
from smug.models.registry import build_denoiser
from smug.models.smoothing import denoise_complex
from smug.objectives import end_to_end_loss
from smug.operators import adjoint_operator, forward_operator, normal_operator
from smug.performance import PerformanceOptions, configure_backends, network_autocast, to_channels_last
from smug.synthetic import sens_map_path, volume_paths, volume_plan, write_synthetic_volume

Row = dict[str, Any]

THROUGHPUT_COLUMNS = (
    "name", "seconds", "slices", "slices_per_s", "detail", "device", "amp", "channels_last",
    "batch", "coils", "height", "width", "denoiser", "chans", "unrolls", "samples",
)  # fmt: skip
TARGET_COLUMNS = ("name", "measured", "goal", "target", "ok", "unit", "detail")
RULE_COLUMNS = ("rule", "runs", "seconds", "max_rss_mb")
# Columns every Snakemake benchmark TSV has (one row per run of the job).
SNAKEMAKE_BENCHMARK_COLUMNS = (
    "s", "h:m:s", "max_rss", "max_vms", "max_uss", "max_pss", "io_in", "io_out", "mean_load", "cpu_time",
)  # fmt: skip

# conjugate_gradient's default: the early-exit check that costs one host sync.
CG_CHECK_EVERY = 8
# Python-level reads of a tensor's value; on a GPU each one waits for the device.
_HOST_READS = ("__bool__", "item", "tolist", "__int__", "__float__", "__index__", "numpy")
_SEED = 0


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


# ----------------------------------------------------------------------------------------------
# Timing
# ----------------------------------------------------------------------------------------------


def time_call(fn: Callable[[], Any], *, warmup: int = 1, repeats: int = 5, device: torch.device | str = "cpu") -> float:
    """Fastest wall-clock seconds of ``fn()`` over ``repeats`` calls, after ``warmup`` untimed calls.

    On CUDA the device is synchronised before and after every timed call, so the time covers the
    kernels ``fn`` launched and not just their launch.
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


# ----------------------------------------------------------------------------------------------
# Problems and models
# ----------------------------------------------------------------------------------------------


def make_problem(size: BenchSize, device: torch.device, multicoil: bool = True) -> Batch:
    """A random undersampled batch like :class:`smug.data.SliceDataset` gives: ``C = 1`` coil unless
    ``multicoil``, one ``(W,)`` mask (every 4th column plus the central 8 %), targets of magnitude
    at most 1, no file names."""
    gen = torch.Generator().manual_seed(_SEED)
    b, h, w = size.batch, size.height, size.width

    def randn_complex(*shape: int) -> torch.Tensor:
        parts = torch.randn((2, *shape), generator=gen)
        return torch.complex(parts[0], parts[1])

    mask = torch.zeros(w, dtype=torch.bool)
    mask[::4] = True
    center = max(1, round(0.08 * w))
    mask[(w - center) // 2 : (w - center) // 2 + center] = True
    target = randn_complex(b, h, w)
    target = target / target.abs().amax(dim=(-2, -1), keepdim=True)
    sens = None
    if multicoil:
        sens = randn_complex(b, size.coils, h, w)
        sens = sens / sens.abs().pow(2).sum(1, keepdim=True).sqrt()
    return Batch(kspace=forward_operator(target, mask, sens), mask=mask, target=target, sens_maps=sens).to(device)


def make_models(size: BenchSize, device: torch.device, options: PerformanceOptions) -> tuple[nn.Module, MoDL, MoDL]:
    """``(denoiser, MoDL, SMUG)`` at ``size``, sharing one denoiser, on ``device`` in eval mode."""
    torch.manual_seed(_SEED)
    denoiser = build_denoiser(size.denoiser, **size.denoiser_args())
    common = dict(num_unrolls=size.unrolls, lam=size.lam, cg_max_iter=size.cg_max_iter, cg_tol=size.cg_tol)
    modl = MoDL(denoiser, **common)
    smug = MoDL(denoiser, smoothing="smug", sigma=0.01, num_samples=size.samples, **common)
    for model in (denoiser, modl, smug):
        model.to(device).eval()
        if options.channels_last:
            to_channels_last(model)
    return denoiser, modl, smug


# ----------------------------------------------------------------------------------------------
# Benchmarks
# ----------------------------------------------------------------------------------------------


def run_benchmarks(
    size: BenchSize,
    device: torch.device | str = "cpu",
    options: PerformanceOptions | None = None,
    work_dir: str | os.PathLike | None = None,
) -> tuple[list[Row], list[Row]]:
    """Every benchmark at ``size``.

    Args:
        size: problem and network sizes, and the timing repeats.
        device: where to run.
        options: accelerator options applied to every network (default: all off).
        work_dir: folder for the synthetic volume of the data-loader benchmark (default: a
            temporary folder, removed afterwards).

    Returns:
        ``(throughput, targets)``: rows with :data:`THROUGHPUT_COLUMNS` and :data:`TARGET_COLUMNS`.
    """
    device = torch.device(device)
    options = options or PerformanceOptions()
    configure_backends(options, device)
    throughput: list[Row] = []
    targets: list[Row] = []
    for bench in (bench_denoiser, bench_smug, bench_dc, bench_pgd):
        rows, ratio_rows = bench(size, device, options)
        throughput += rows
        targets += ratio_rows
    with contextlib.ExitStack() as stack:
        folder = work_dir if work_dir is not None else stack.enter_context(tempfile.TemporaryDirectory())
        rows, ratio_rows = bench_loader(size, device, options, Path(folder))
    throughput += rows
    targets += ratio_rows
    return throughput, targets


def bench_denoiser(size: BenchSize, device: torch.device, options: PerformanceOptions) -> tuple[list[Row], list[Row]]:
    """Forward+backward of the denoiser on ``batch`` 2-channel images, as in training."""
    denoiser, _, _ = make_models(size, device, options)
    denoiser.train()
    images = torch.randn(size.batch, 2, size.height, size.width, generator=torch.Generator().manual_seed(_SEED))
    images = images.to(device)

    def step() -> None:
        denoiser.zero_grad(set_to_none=True)
        with network_autocast(denoiser, options, device):
            out = denoiser(images)
        out.square().mean().backward()

    seconds = _time(step, size, device)
    return [_throughput_row("denoiser_fwd_bwd", seconds, size.batch, size, device, options)], []


def bench_smug(size: BenchSize, device: torch.device, options: PerformanceOptions) -> tuple[list[Row], list[Row]]:
    """MoDL and SMUG forwards, and SMUG against the sum of its parts, on the multicoil problem."""
    denoiser, modl, smug = make_models(size, device, options)
    batch = make_problem(size, device)
    kspace, mask, sens = batch.kspace, batch.mask, batch.sens_maps
    noise = torch.Generator(device=device).manual_seed(_SEED)
    aty = adjoint_operator(kspace, mask, sens)
    noisy_copies = aty.repeat(size.samples, 1, 1)

    def forward(model: MoDL) -> Callable[[], Any]:
        def call() -> torch.Tensor:
            with torch.no_grad(), network_autocast(model, options, device):
                return model(kspace, mask, sens, generator=noise)

        return call

    @torch.no_grad()
    def denoise_m_copies() -> torch.Tensor:
        with network_autocast(denoiser, options, device):
            return denoise_complex(denoiser, noisy_copies)

    with torch.no_grad(), network_autocast(denoiser, options, device):
        z = denoise_complex(denoiser, aty)

    @torch.no_grad()
    def dc_step() -> torch.Tensor:
        return data_consistency(z, aty, mask, smug.lam, sens, max_iter=size.cg_max_iter, tol=size.cg_tol)

    t_modl = _time(forward(modl), size, device)
    t_smug, t_denoise, t_dc = _time_interleaved([forward(smug), denoise_m_copies, dc_step], size, device)
    parts = size.unrolls * (t_denoise + t_dc)
    m_slices = size.samples * size.batch
    rows = [
        _throughput_row("modl_forward", t_modl, size.batch, size, device, options),
        _throughput_row("smug_forward", t_smug, size.batch, size, device, options, f"M={size.samples}"),
        _throughput_row("denoiser_forward_m_batched", t_denoise, m_slices, size, device, options, f"{m_slices} images"),
        _throughput_row(
            "multicoil_dc_step", t_dc, size.batch, size, device, options, f"cg_max_iter={size.cg_max_iter}"
        ),
    ]
    detail = f"smug {t_smug:.4g} s vs N={size.unrolls} x (M-batched denoiser {t_denoise:.4g} s + DC {t_dc:.4g} s)"
    return rows, [_target_row("smug_forward_overhead", t_smug / parts, "<=", 1.1, "x", detail)]


def bench_dc(size: BenchSize, device: torch.device, options: PerformanceOptions) -> tuple[list[Row], list[Row]]:
    """Closed-form single-coil DC vs CG on the same system; host syncs of the batched multicoil CG."""
    single = make_problem(size, device, multicoil=False)
    mask = single.mask
    aty = adjoint_operator(single.kspace, mask)
    # A denoiser-like z: the target plus a little error, so CG starts near, not at, the solution.
    gen = torch.Generator().manual_seed(_SEED + 1)
    z = single.target + 0.05 * torch.randn(single.target.shape, generator=gen, dtype=torch.complex64).to(device)
    lam = torch.tensor(size.lam, device=device)
    cg_cap = 100
    ones = torch.ones(size.batch, 1, size.height, size.width, dtype=torch.complex64, device=device)

    def system(sens: torch.Tensor | None, masks: torch.Tensor, zero_filled: torch.Tensor, lam_z: torch.Tensor):
        rhs = zero_filled + lam * lam_z
        return (lambda x: normal_operator(x, masks, sens) + lam * x), rhs

    single_matrix, single_rhs = system(ones, mask, aty, z)

    @torch.no_grad()
    def closed_form() -> torch.Tensor:
        return closed_form_dc(z, aty, mask, lam)

    @torch.no_grad()
    def cg_single() -> tuple[torch.Tensor, torch.Tensor]:
        return conjugate_gradient(single_matrix, single_rhs, z, max_iter=cg_cap, tol=size.cg_tol)

    t_closed = _time(closed_form, size, device)
    t_cg = _time(cg_single, size, device)
    exact = closed_form()
    solved, iterations = cg_single()
    error = float((solved - exact).abs().max() / exact.abs().max())
    cg_iterations = int(iterations.max())

    multi = make_problem(size, device)
    m_aty = adjoint_operator(multi.kspace, multi.mask, multi.sens_maps)
    multi_matrix, multi_rhs = system(multi.sens_maps, multi.mask, m_aty, m_aty)
    max_iter = max(size.cg_max_iter, CG_CHECK_EVERY + 1)
    # tol=0 keeps every sample active, so all max_iter iterations run: the worst case for syncs.
    with torch.no_grad():
        conjugate_gradient(multi_matrix, multi_rhs, m_aty, max_iter=max_iter, tol=0.0, check_every=CG_CHECK_EVERY)
        with count_host_syncs(device) as syncs:
            conjugate_gradient(multi_matrix, multi_rhs, m_aty, max_iter=max_iter, tol=0.0, check_every=CG_CHECK_EVERY)
    measured_syncs = syncs.cuda_syncs if syncs.cuda_syncs is not None else syncs.host_reads
    how = "CUDA syncs (sync debug mode)" if syncs.cuda_syncs is not None else "host reads of tensor values"

    rows = [
        _throughput_row("closed_form_dc", t_closed, size.batch, size, device, options, "single-coil"),
        _throughput_row(
            "cg_dc_single_coil", t_cg, size.batch, size, device, options,
            f"{cg_iterations} iterations to tol {size.cg_tol:g}, rel. difference {error:.2e}",
        ),
    ]  # fmt: skip
    targets = [
        _target_row(
            "closed_form_dc_speedup", t_cg / t_closed, ">=", 5.0, "x",
            f"CG {cg_iterations} iterations ({t_cg:.4g} s) vs closed form ({t_closed:.4g} s)",
        ),
        _target_row(
            "cg_host_syncs", measured_syncs, "<=", math.ceil(max_iter / CG_CHECK_EVERY), "syncs/solve",
            f"{how} in {max_iter} batched multicoil iterations, check_every={CG_CHECK_EVERY}",
        ),
    ]  # fmt: skip
    return rows, targets


def bench_pgd(size: BenchSize, device: torch.device, options: PerformanceOptions) -> tuple[list[Row], list[Row]]:
    """One PGD k-space step on MoDL against one forward+backward of MoDL."""
    _, modl, _ = make_models(size, device, options)
    batch = make_problem(size, device)
    noise = torch.Generator(device=device).manual_seed(_SEED)

    def pgd_step() -> torch.Tensor:
        with network_autocast(modl, options, device):
            return pgd_kspace_attack(modl, batch, eps=0.01, steps=1, loss_target="gt", generator=noise)

    def forward_backward() -> None:
        modl.zero_grad(set_to_none=True)
        with network_autocast(modl, options, device):
            recon = modl(batch.kspace, batch.mask, batch.sens_maps)
        torch.view_as_real(recon - batch.target).square().sum().backward()

    t_pgd = _time(pgd_step, size, device)
    t_fwd_bwd = _time(forward_backward, size, device)
    rows = [
        _throughput_row("pgd_step", t_pgd, size.batch, size, device, options, "MoDL, k-space linf"),
        _throughput_row("modl_fwd_bwd", t_fwd_bwd, size.batch, size, device, options),
    ]
    detail = f"PGD step {t_pgd:.4g} s vs forward+backward {t_fwd_bwd:.4g} s"
    return rows, [_target_row("pgd_step_overhead", t_pgd / t_fwd_bwd, "<=", 1.3, "x", detail)]


def bench_loader(
    size: BenchSize, device: torch.device, options: PerformanceOptions, work_dir: Path
) -> tuple[list[Row], list[Row]]:
    """A cached :class:`SliceDataset` over a synthetic volume against MoDL training steps on its batches."""
    dataset = synthetic_dataset(size, work_dir)
    loader = DataLoader(
        dataset,
        batch_size=size.batch,
        collate_fn=collate,
        pin_memory=options.pin_memory and device.type == "cuda",
    )

    def one_pass() -> None:
        for batch in loader:
            batch.to(device)

    one_pass()  # fills the cache, as the first epoch does
    t_pass = _time(one_pass, size, device)
    loader_rate = len(dataset) / t_pass

    _, modl, _ = make_models(size, device, options)
    modl.train()
    optimizer = torch.optim.Adam(modl.parameters(), lr=1e-4)
    batch = next(iter(loader)).to(device)
    slices = len(batch.fnames)
    noise = torch.Generator(device=device).manual_seed(_SEED)

    def train_step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with network_autocast(modl, options, device):
            loss = end_to_end_loss(modl, batch, noise)
        loss.backward()
        optimizer.step()

    t_step = _time(train_step, size, device)
    train_rate = slices / t_step
    rows = [
        _throughput_row("loader_cached", t_pass, len(dataset), size, device, options, "one pass, batches to device"),
        _throughput_row("modl_train_step", t_step, slices, size, device, options, "forward, backward, Adam"),
    ]
    detail = f"loader {loader_rate:.4g} slices/s vs training {train_rate:.4g} slices/s"
    return rows, [_target_row("loader_headroom", loader_rate / train_rate, ">=", 10.0, "x", detail)]


def synthetic_dataset(size: BenchSize, work_dir: str | os.PathLike) -> SliceDataset:
    """A cached dataset over one synthetic volume of ``size.loader_slices`` slices (multicoil if
    ``size.coils > 1``), written under ``work_dir``, with the problem's column mask."""
    work_dir = Path(work_dir)
    spec = volume_plan(_SEED, {"train": 1}, ["knee"])[0]
    multicoil = size.coils > 1
    challenge = "multicoil" if multicoil else "singlecoil"
    path = volume_paths(work_dir, challenge, [spec])[0]
    sens_path = sens_map_path(work_dir, spec.fname) if multicoil else None
    write_synthetic_volume(
        path,
        spec,
        challenge=challenge,
        num_slices=size.loader_slices,
        recon_size=(size.height, size.width),
        kspace_size=(2 * size.height, size.width),
        num_coils=size.coils,
        noise_level=0.005,
        sens_path=sens_path,
    )
    mask = make_problem(size, torch.device("cpu"), multicoil=False).mask
    return SliceDataset(
        select_slices([path], None),
        mask=mask,
        sens_dir=None if sens_path is None else sens_path.parent,
        cache=True,
    )


# ----------------------------------------------------------------------------------------------
# Snakemake rule benchmarks
# ----------------------------------------------------------------------------------------------


def rule_benchmarks(folder: str | os.PathLike) -> tuple[list[Row], Row]:
    """Wall time and memory of every pipeline job from Snakemake's ``benchmark:`` TSV files.

    Args:
        folder: holds ``*.tsv`` files (``results/benchmarks/rules``), one per job, one row per run
            (:data:`SNAKEMAKE_BENCHMARK_COLUMNS`; ``NA`` where Snakemake could not measure).

    Returns:
        ``(rows, total)``: per job ``rule`` (the file's stem), ``runs``, ``seconds`` (mean over runs)
        and ``max_rss_mb`` (peak over runs), slowest first; and a ``rule="total"`` row with the summed
        seconds and the peak RSS over all jobs (NaN when nothing was measured). A missing folder
        gives no rows.

    Raises:
        ValueError: a file that is not a Snakemake benchmark (the message names it).
    """
    folder = Path(folder)
    rows = []
    for path in sorted(folder.glob("*.tsv")) if folder.is_dir() else []:
        runs = _read_benchmark_tsv(path)
        seconds = [run["s"] for run in runs if math.isfinite(run["s"])]
        rss = [run["max_rss"] for run in runs if math.isfinite(run["max_rss"])]
        rows.append(
            {
                "rule": path.stem,
                "runs": len(runs),
                "seconds": statistics.fmean(seconds) if seconds else math.nan,
                "max_rss_mb": max(rss) if rss else math.nan,
            }
        )
    rows.sort(key=lambda row: -row["seconds"] if math.isfinite(row["seconds"]) else math.inf)
    measured_rss = [row["max_rss_mb"] for row in rows if math.isfinite(row["max_rss_mb"])]
    total = {
        "rule": "total",
        "runs": sum(row["runs"] for row in rows),
        "seconds": math.fsum(row["seconds"] for row in rows if math.isfinite(row["seconds"])),
        "max_rss_mb": max(measured_rss) if measured_rss else math.nan,
    }
    return rows, total


def _read_benchmark_tsv(path: Path) -> list[dict[str, float]]:
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle, delimiter="\t")
        missing = [c for c in ("s", "max_rss") if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(
                f"{path}: not a Snakemake benchmark file (no column {', '.join(missing)}; "
                f"header {reader.fieldnames})"
            )
        runs = []
        for line, record in enumerate(reader, start=2):
            try:
                runs.append({key: _number(record[key]) for key in ("s", "max_rss")})
            except ValueError as exc:
                raise ValueError(f"{path}, line {line}: {exc}") from None
    if not runs:
        raise ValueError(f"{path}: a Snakemake benchmark file without any run")
    return runs


def _number(text: str | None) -> float:
    if text is None or text.strip() in ("", "NA", "-"):
        return math.nan
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a number") from None


# ----------------------------------------------------------------------------------------------
# Output
# ----------------------------------------------------------------------------------------------


def write_rows(path: str | os.PathLike, rows: Sequence[Row], columns: Sequence[str]) -> None:
    """Write ``rows`` as CSV with ``columns`` (a header even without rows), atomically."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    with atomic_path(path) as tmp:
        tmp.write_text(buffer.getvalue())


def format_summary(
    throughput: Sequence[Row],
    targets: Sequence[Row],
    rules: Sequence[Row] = (),
    rules_total: Row | None = None,
) -> str:
    """A readable report: throughput per benchmark, each ratio against its target, the rule totals."""
    lines = ["throughput"]
    for row in throughput:
        lines.append(
            f"  {row['name']:<28} {row['seconds'] * 1e3:>10.3f} ms  {row['slices_per_s']:>10.1f} slices/s"
            + (f"  ({row['detail']})" if row["detail"] else "")
        )
    met = sum(bool(row["ok"]) for row in targets)
    lines.append(f"targets ({met} of {len(targets)} met)")
    for row in targets:
        verdict = "ok" if row["ok"] else "MISSED"
        lines.append(
            f"  {row['name']:<28} {row['measured']:>10.3g} {row['unit']:<12} target {row['goal']} "
            f"{row['target']:<6g} {verdict:<6}  {row['detail']}"
        )
    if rules_total is not None:
        lines.append(
            f"rules: {len(rules)} jobs, {rules_total['seconds']:.1f} s in all, "
            f"peak RSS {rules_total['max_rss_mb']:.1f} MB"
        )
        for row in rules[:5]:
            lines.append(f"  {row['rule']:<40} {row['seconds']:>10.1f} s {row['max_rss_mb']:>10.1f} MB")
    return "\n".join(lines)


def _time(fn: Callable[[], Any], size: BenchSize, device: torch.device) -> float:
    return time_call(fn, warmup=size.warmup, repeats=size.repeats, device=device)


def _time_interleaved(fns: Sequence[Callable[[], Any]], size: BenchSize, device: torch.device) -> list[float]:
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


def _throughput_row(
    name: str,
    seconds: float,
    slices: int,
    size: BenchSize,
    device: torch.device,
    options: PerformanceOptions,
    detail: str = "",
) -> Row:
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


def _target_row(name: str, measured: float, goal: str, target: float, unit: str, detail: str) -> Row:
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
