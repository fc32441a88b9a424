"""The five benchmarks of the reconstruction code and their ratio targets, at one benchmark size."""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn
from torch.utils.data import DataLoader

from benchmarks.harness import (
    BenchSize,
    Row,
    count_host_syncs,
    target_row,
    throughput_row,
    time_interleaved,
    time_sized,
)
from smug.attacks import pgd_kspace_attack
from smug.data import Batch, collate, select_slices, sens_map_path, SliceDataset, volume_paths, volume_plan
from smug.data import write_synthetic_volume
from smug.mri.data_consistency import closed_form_dc, conjugate_gradient
from smug.models import RSE2E, MoDL, build_denoiser, denoise_complex
from smug.training import configure_backends, end_to_end_loss, network_autocast, PerformanceOptions
from smug.training import to_channels_last
from smug.mri import adjoint_operator, forward_operator, normal_operator

LOG = logging.getLogger("smug.bench")

# conjugate_gradient's default: the early-exit check that costs one host sync.
CG_CHECK_EVERY = 8
_SEED = 0


def make_problem(size: BenchSize, device: torch.device, multicoil: bool = True) -> Batch:
    """A random undersampled batch like :class:`smug.data.datasets.SliceDataset` gives: ``C = 1`` coil unless
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
    return Batch(kspace=forward_operator(target, mask, sens), mask=mask, target=target, sens_maps=sens).to(
        device
    )


def make_models(
    size: BenchSize, device: torch.device, options: PerformanceOptions
) -> tuple[nn.Module, MoDL, MoDL]:
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


def run_benchmarks(
    size: BenchSize,
    device: torch.device | str = "cpu",
    options: PerformanceOptions | None = None,
    work_dir: str | os.PathLike | None = None,
    compiled: bool = False,
) -> tuple[list[Row], list[Row]]:
    """Every benchmark at ``size``: real library code (the models, data consistency, the PGD attack,
    the slice dataset) timed for throughput, and ratios that state what the implementation
    promises, each measured within one run so the machine's speed cancels out:

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
    - ``*_vs_eager`` (DIDN only): the M-batched DIDN forward and the SMUG forward computed
      channels-last (and, with ``compiled``, through ``torch.compile``) against the eager default
      layout (target >= 1: never slower).

    Args:
        size: problem and network sizes, and the timing repeats.
        device: where to run.
        options: accelerator options applied to every network (default: all off).
        work_dir: folder for the synthetic volume of the data-loader benchmark (default: a
            temporary folder, removed afterwards).
        compiled: also time the DIDN through ``torch.compile`` (skipped, logged, where it cannot
            compile).

    Returns:
        ``(throughput, targets)``: rows with the columns of :mod:`benchmarks.harness`.
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
    rows, ratio_rows = bench_layouts(size, device, options, compiled)
    throughput += rows
    targets += ratio_rows
    with contextlib.ExitStack() as stack:
        folder = work_dir if work_dir is not None else stack.enter_context(tempfile.TemporaryDirectory())
        rows, ratio_rows = bench_loader(size, device, options, Path(folder))
    throughput += rows
    targets += ratio_rows
    return throughput, targets


def bench_denoiser(
    size: BenchSize, device: torch.device, options: PerformanceOptions
) -> tuple[list[Row], list[Row]]:
    """Forward+backward of the denoiser on ``batch`` 2-channel images, as in training."""
    denoiser, _, _ = make_models(size, device, options)
    denoiser.train()
    images = torch.randn(
        size.batch, 2, size.height, size.width, generator=torch.Generator().manual_seed(_SEED)
    )
    images = images.to(device)

    def step() -> None:
        denoiser.zero_grad(set_to_none=True)
        with network_autocast(denoiser, options, device):
            out = denoiser(images)
        out.square().mean().backward()

    seconds = time_sized(step, size, device)
    return [throughput_row("denoiser_fwd_bwd", seconds, size.batch, size, device, options)], []


def bench_smug(
    size: BenchSize, device: torch.device, options: PerformanceOptions
) -> tuple[list[Row], list[Row]]:
    """MoDL, SMUG and RS-E2E forwards, and SMUG against the sum of its parts, on the multicoil problem."""
    denoiser, modl, smug = make_models(size, device, options)
    batch = make_problem(size, device)
    kspace, physics = batch.kspace, batch.physics
    noise = torch.Generator(device=device).manual_seed(_SEED)
    aty = physics.A_adjoint(kspace)
    noisy_copies = aty.repeat(size.samples, 1, 1)

    def forward(model: MoDL) -> Callable[[], Any]:
        def call() -> torch.Tensor:
            with torch.no_grad(), network_autocast(model, options, device):
                return model(kspace, physics, generator=noise)

        return call

    @torch.no_grad()
    def denoise_m_copies() -> torch.Tensor:
        with network_autocast(denoiser, options, device):
            return denoise_complex(denoiser, noisy_copies)

    with torch.no_grad(), network_autocast(denoiser, options, device):
        z = denoise_complex(denoiser, aty)

    @torch.no_grad()
    def dc_step() -> torch.Tensor:
        return physics.data_consistency(z, aty, smug.lam, max_iter=size.cg_max_iter, tol=size.cg_tol)

    rs_e2e = RSE2E(modl, sigma=0.01, num_samples=size.samples).to(device).eval()
    t_modl, t_rs_e2e = time_interleaved([forward(modl), forward(rs_e2e)], size, device)
    t_smug, t_denoise, t_dc = time_interleaved([forward(smug), denoise_m_copies, dc_step], size, device)
    parts = size.unrolls * (t_denoise + t_dc)
    m_slices = size.samples * size.batch
    rows = [
        throughput_row("modl_forward", t_modl, size.batch, size, device, options),
        throughput_row("smug_forward", t_smug, size.batch, size, device, options, f"M={size.samples}"),
        throughput_row("rs_e2e_forward", t_rs_e2e, size.batch, size, device, options, f"M={size.samples}"),
        throughput_row(
            "denoiser_forward_m_batched", t_denoise, m_slices, size, device, options, f"{m_slices} images"
        ),
        throughput_row(
            "multicoil_dc_step", t_dc, size.batch, size, device, options, f"cg_max_iter={size.cg_max_iter}"
        ),
    ]
    detail = (
        f"smug {t_smug:.4g} s vs N={size.unrolls} x (M-batched denoiser {t_denoise:.4g} s + DC {t_dc:.4g} s)"
    )
    return rows, [target_row("smug_forward_overhead", t_smug / parts, "<=", 1.1, "x", detail)]


def bench_layouts(
    size: BenchSize, device: torch.device, options: PerformanceOptions, compiled: bool = False
) -> tuple[list[Row], list[Row]]:
    """The DIDN's memory format, and optionally ``torch.compile``, against the eager default layout
    (``channels_last="off"``): the M-batched denoiser forward and the SMUG forward, interleaved, each
    as a ratio to the eager baseline (above 1: faster). Only for the DIDN."""
    if size.denoiser != "didn":
        return [], []
    torch.manual_seed(_SEED)
    variants = {"eager": build_denoiser("didn", **size.denoiser_args(), channels_last="off")}
    variants["channels_last"] = build_denoiser("didn", **size.denoiser_args(), channels_last="on")
    variants["channels_last"].load_state_dict(variants["eager"].state_dict())
    if compiled:
        variants["compiled"] = compile_or_none(variants["channels_last"], size, device)
        if variants["compiled"] is None:
            del variants["compiled"]
    batch = make_problem(size, device)
    noise = torch.Generator(device=device).manual_seed(_SEED)
    images = torch.randn(
        size.samples * size.batch, 2, size.height, size.width, generator=torch.Generator().manual_seed(_SEED)
    )
    images = images.to(device)
    common = dict(num_unrolls=size.unrolls, lam=size.lam, cg_max_iter=size.cg_max_iter, cg_tol=size.cg_tol)
    calls = []
    for denoiser in variants.values():
        denoiser.to(device).eval()
        smug = (
            MoDL(denoiser, smoothing="smug", sigma=0.01, num_samples=size.samples, **common).to(device).eval()
        )
        calls += [
            torch.no_grad()(lambda d=denoiser: d(images)),
            torch.no_grad()(lambda m=smug: m(batch.kspace, batch.physics, generator=noise)),
        ]
    times = time_interleaved(calls, size, device)
    rows, ratios = [], []
    t_eager_denoiser, t_eager_smug = times[0], times[1]
    for i, name in enumerate(variants):
        t_denoiser, t_smug = times[2 * i], times[2 * i + 1]
        m = size.samples * size.batch
        rows += [
            throughput_row(
                f"didn_forward_m_batched_{name}", t_denoiser, m, size, device, options, f"{m} images"
            ),
            throughput_row(
                f"smug_forward_{name}", t_smug, size.batch, size, device, options, f"M={size.samples}"
            ),
        ]
        if name != "eager":
            for what, t, t0 in (
                ("didn_forward", t_denoiser, t_eager_denoiser),
                ("smug_forward", t_smug, t_eager_smug),
            ):
                detail = f"{name} {t:.4g} s vs eager default layout {t0:.4g} s"
                ratios.append(target_row(f"{what}_{name}_vs_eager", t0 / t, ">=", 1.0, "x", detail))
    return rows, ratios


def compile_or_none(denoiser: nn.Module, size: BenchSize, device: torch.device) -> nn.Module | None:
    """``torch.compile(denoiser)``, compiled now for the benchmark's two shapes, or None (logged)
    where it cannot be: no C++ compiler, or a backend that fails."""
    compiled = torch.compile(copy.deepcopy(denoiser))
    try:
        with torch.no_grad():
            for batch in (size.samples * size.batch, size.batch):
                compiled(torch.zeros(batch, 2, size.height, size.width, device=device))
    except Exception as exc:  # noqa: BLE001  (inductor raises many kinds; any means: not here)
        LOG.warning(
            "torch.compile is not available here (%s: %s); skipping the compiled variant",
            type(exc).__name__,
            str(exc).splitlines()[0] if str(exc) else "",
        )
        return None
    return compiled


def bench_dc(
    size: BenchSize, device: torch.device, options: PerformanceOptions
) -> tuple[list[Row], list[Row]]:
    """Closed-form single-coil DC vs CG on the same system; host syncs of the batched multicoil CG."""
    single = make_problem(size, device, multicoil=False)
    mask = single.mask
    aty = adjoint_operator(single.kspace, mask)
    # A denoiser-like z: the target plus a little error, so CG starts near, not at, the solution.
    gen = torch.Generator().manual_seed(_SEED + 1)
    z = single.target + 0.05 * torch.randn(single.target.shape, generator=gen, dtype=torch.complex64).to(
        device
    )
    lam = torch.tensor(size.lam, device=device)
    cg_cap = 100
    ones = torch.ones(size.batch, 1, size.height, size.width, dtype=torch.complex64, device=device)

    def system(
        sens: torch.Tensor | None, masks: torch.Tensor, zero_filled: torch.Tensor, lam_z: torch.Tensor
    ):
        rhs = zero_filled + lam * lam_z
        return (lambda x: normal_operator(x, masks, sens) + lam * x), rhs

    single_matrix, single_rhs = system(ones, mask, aty, z)

    @torch.no_grad()
    def closed_form() -> torch.Tensor:
        return closed_form_dc(z, aty, mask, lam)

    @torch.no_grad()
    def cg_single() -> tuple[torch.Tensor, torch.Tensor]:
        return conjugate_gradient(single_matrix, single_rhs, z, max_iter=cg_cap, tol=size.cg_tol)

    t_closed = time_sized(closed_form, size, device)
    t_cg = time_sized(cg_single, size, device)
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
        conjugate_gradient(
            multi_matrix, multi_rhs, m_aty, max_iter=max_iter, tol=0.0, check_every=CG_CHECK_EVERY
        )
        with count_host_syncs(device) as syncs:
            conjugate_gradient(
                multi_matrix, multi_rhs, m_aty, max_iter=max_iter, tol=0.0, check_every=CG_CHECK_EVERY
            )
    measured_syncs = syncs.cuda_syncs if syncs.cuda_syncs is not None else syncs.host_reads
    how = "CUDA syncs (sync debug mode)" if syncs.cuda_syncs is not None else "host reads of tensor values"

    rows = [
        throughput_row("closed_form_dc", t_closed, size.batch, size, device, options, "single-coil"),
        throughput_row(
            "cg_dc_single_coil", t_cg, size.batch, size, device, options,
            f"{cg_iterations} iterations to tol {size.cg_tol:g}, rel. difference {error:.2e}",
        ),
    ]  # fmt: skip
    targets = [
        target_row(
            "closed_form_dc_speedup", t_cg / t_closed, ">=", 5.0, "x",
            f"CG {cg_iterations} iterations ({t_cg:.4g} s) vs closed form ({t_closed:.4g} s)",
        ),
        target_row(
            "cg_host_syncs", measured_syncs, "<=", math.ceil(max_iter / CG_CHECK_EVERY), "syncs/solve",
            f"{how} in {max_iter} batched multicoil iterations, check_every={CG_CHECK_EVERY}",
        ),
    ]  # fmt: skip
    return rows, targets


def bench_pgd(
    size: BenchSize, device: torch.device, options: PerformanceOptions
) -> tuple[list[Row], list[Row]]:
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
            recon = modl(batch.kspace, batch.physics)
        torch.view_as_real(recon - batch.target).square().sum().backward()

    t_pgd = time_sized(pgd_step, size, device)
    t_fwd_bwd = time_sized(forward_backward, size, device)
    rows = [
        throughput_row("pgd_step", t_pgd, size.batch, size, device, options, "MoDL, k-space linf"),
        throughput_row("modl_fwd_bwd", t_fwd_bwd, size.batch, size, device, options),
    ]
    detail = f"PGD step {t_pgd:.4g} s vs forward+backward {t_fwd_bwd:.4g} s"
    return rows, [target_row("pgd_step_overhead", t_pgd / t_fwd_bwd, "<=", 1.3, "x", detail)]


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
    t_pass = time_sized(one_pass, size, device)
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

    t_step = time_sized(train_step, size, device)
    train_rate = slices / t_step
    rows = [
        throughput_row(
            "loader_cached", t_pass, len(dataset), size, device, options, "one pass, batches to device"
        ),
        throughput_row("modl_train_step", t_step, slices, size, device, options, "forward, backward, Adam"),
    ]
    detail = f"loader {loader_rate:.4g} slices/s vs training {train_rate:.4g} slices/s"
    return rows, [target_row("loader_headroom", loader_rate / train_rate, ">=", 10.0, "x", detail)]


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
