"""Wavelets and classical compressed sensing: exactness of the transforms, monotonicity and quality of
the solvers, the model interface, lam tuning and gradients for attacks."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from smug.evaluation import metrics
from smug.models import CompressedSensing, from_record, l1_wavelet_objective, l1_wavelet_recon
from smug.models import lipschitz_bound, to_record, total_variation, tv_objective, tv_recon
from smug.training import tune_regularization
from smug.data import Batch
from smug.mri import (
    MRIPhysics,
    adjoint_operator,
    analysis_matrix,
    dwt2,
    forward_operator,
    idwt2,
    normal_operator,
)
from smug.mri import wavelet_filters, WAVELETS
from tests.conftest import random_complex, random_sens_maps

N = 32
REPO = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------------------------
# Test data
# ----------------------------------------------------------------------------------------------


def phantom(n: int = N) -> torch.Tensor:
    """Piecewise-smooth complex phantom ``(1, n, n)``: three soft-edged objects with an intensity
    ramp, a smooth phase, max magnitude 1."""
    axis = torch.linspace(-1, 1, n, dtype=torch.float64)
    v, u = torch.meshgrid(axis, axis, indexing="ij")

    def inside(signed_distance: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(-signed_distance / (1.0 / n))

    image = (
        0.5 * inside(((u / 0.8) ** 2 + (v / 0.9) ** 2).sqrt() - 1) * (1 + 0.3 * u)
        + 0.3 * inside(0.3 * (((u + 0.2) / 0.3) ** 2 + ((v - 0.1) / 0.4) ** 2).sqrt() - 0.3)
        + 0.4 * inside(torch.maximum((u - 0.35).abs() - 0.15, (v + 0.3).abs() - 0.2))
    )
    image = image * torch.exp(0.5j * (u + v))
    return (image / image.abs().max())[None]


def mask_4x(n: int = N) -> torch.Tensor:
    """``n / 4`` columns: a centre block of 4 and scattered outer lines."""
    mask = torch.zeros(n, dtype=torch.bool)
    mask[n // 2 - 2 : n // 2 + 2] = True
    mask[[2, 7, 11, 21, 25, 29]] = True
    return mask


def smooth_sens_maps(coils: int, n: int = N) -> torch.Tensor:
    """Smooth Gaussian coil profiles around the image with linear phases, ``sum_c |S_c|^2 = 1``."""
    axis = torch.linspace(-1, 1, n, dtype=torch.float64)
    v, u = torch.meshgrid(axis, axis, indexing="ij")
    maps = []
    for c in range(coils):
        angle = 2 * math.pi * c / coils
        distance_sq = (u - 1.2 * math.cos(angle)) ** 2 + (v - 1.2 * math.sin(angle)) ** 2
        maps.append(torch.exp(-distance_sq / 1.5) * torch.exp(1j * (c + 1) * 0.7 * (u * math.sin(angle) + v)))
    maps = torch.stack(maps)
    return (maps / (maps.abs() ** 2).sum(0).sqrt())[None]


def problem(coils: int | None):
    """``(x, kspace, mask, sens_maps, zero_filled)`` of the phantom at 4x."""
    x, mask = phantom(), mask_4x()
    sens = None if coils is None else smooth_sens_maps(coils)
    kspace = forward_operator(x, mask, sens)
    return x, kspace, mask, sens, adjoint_operator(kspace, mask, sens)


def psnr(x: torch.Tensor, recon: torch.Tensor) -> float:
    return metrics.psnr(x.abs().numpy(), recon.detach().abs().numpy())


# ----------------------------------------------------------------------------------------------
# Wavelets
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("wavelet", WAVELETS)
@pytest.mark.parametrize("levels", [1, 3, 4])
@pytest.mark.parametrize("dtype", [torch.float64, torch.complex128])
def test_wavelet_perfect_reconstruction(wavelet, levels, dtype, gen):
    x = random_complex((2, 32, 16), gen)
    x = x if dtype.is_complex else x.real
    coeffs = dwt2(x, wavelet, levels)
    assert coeffs.shape == x.shape and coeffs.dtype == x.dtype
    torch.testing.assert_close(idwt2(coeffs, wavelet, levels), x, rtol=0, atol=1e-12)


@pytest.mark.parametrize("wavelet", WAVELETS)
def test_wavelet_is_orthonormal(wavelet, gen):
    x, y = random_complex((2, 16, 32), gen), random_complex((2, 16, 32), gen)
    torch.testing.assert_close(dwt2(x, wavelet, 3).norm(), x.norm(), rtol=1e-12, atol=0)
    inner = lambda a, b: (a.conj() * b).sum()  # noqa: E731
    torch.testing.assert_close(
        inner(dwt2(x, wavelet, 3), y), inner(x, idwt2(y, wavelet, 3)), rtol=1e-12, atol=0
    )
    # Orthogonal at every even length, also shorter than the 8-tap db4 filter (wrap-around).
    for n in (2, 4, 6, 16):
        matrix = analysis_matrix(n, wavelet)
        torch.testing.assert_close(matrix @ matrix.T, torch.eye(n, dtype=torch.float64), rtol=0, atol=1e-14)


def test_db4_filter_has_four_vanishing_moments():
    low, high = wavelet_filters("db4")
    n = torch.arange(8, dtype=torch.float64)
    assert low.sum().item() == pytest.approx(math.sqrt(2), abs=1e-14)
    for moment in range(4):
        assert (high * n**moment).sum().item() == pytest.approx(0, abs=1e-9)
    assert (high * n**4).sum().abs().item() > 1
    # A constant image has no detail at any level: all energy in the coarsest approximation.
    coeffs = dwt2(torch.full((1, 16, 16), 0.5, dtype=torch.float64), "db4", 2)
    torch.testing.assert_close(
        coeffs[0, :4, :4], torch.full((4, 4), 2.0, dtype=torch.float64), rtol=0, atol=1e-12
    )
    assert coeffs[0].abs().sum().item() == pytest.approx(32.0, rel=1e-12)


def test_haar_known_values():
    image = torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=torch.float64)
    expected = torch.tensor([[5.0, -1.0], [-2.0, 0.0]], dtype=torch.float64)  # [[LL, LH], [HL, HH]]
    torch.testing.assert_close(dwt2(image, "haar", 1), expected)
    torch.testing.assert_close(dwt2(image * (1 - 2j), "haar", 1), expected * (1 - 2j))
    # Two levels on a 4x4 image: the level-1 LL block [[7, 11], [23, 27]] / 2 transformed again.
    image = torch.arange(16, dtype=torch.float64).reshape(4, 4) + 1
    coeffs = dwt2(image, "haar", 2)
    torch.testing.assert_close(
        coeffs[:2, :2], torch.tensor([[34.0, -4.0], [-16.0, 0.0]], dtype=torch.float64)
    )
    torch.testing.assert_close(coeffs[:2, 2:], torch.full((2, 2), -1.0, dtype=torch.float64))  # LH
    torch.testing.assert_close(coeffs[2:, :2], torch.full((2, 2), -4.0, dtype=torch.float64))  # HL
    torch.testing.assert_close(coeffs[2:, 2:], torch.zeros(2, 2, dtype=torch.float64))


def test_wavelet_rejects_bad_input():
    with pytest.raises(ValueError, match=r"\(1, 20, 16\)"):
        dwt2(torch.zeros(1, 20, 16), "haar", 3)
    with pytest.raises(ValueError, match="sym8"):
        dwt2(torch.zeros(1, 16, 16), "sym8", 1)
    with pytest.raises(ValueError, match="levels"):
        idwt2(torch.zeros(1, 16, 16), "haar", 0)


# ----------------------------------------------------------------------------------------------
# Solvers
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("coils", [None, 4])
def test_operator_norm_at_most_one(coils, gen):
    """Power iteration on A^H A: the step 1/L with L = 1 is safe for normalised sensitivities."""
    sens = None if coils is None else random_sens_maps(2, coils, 16, 16, gen)
    mask = torch.rand(16, generator=gen) < 0.5
    x = random_complex((2, 16, 16), gen)
    for _ in range(100):
        x = normal_operator(x, mask, sens)
        x = x / x.flatten(1).norm(dim=1).reshape(-1, 1, 1)
    eigenvalue = normal_operator(x, mask, sens).flatten(1).norm(dim=1)
    assert (eigenvalue <= 1 + 1e-9).all()
    assert (eigenvalue > 0.5).all()  # the iteration did find the top of the spectrum
    bound = lipschitz_bound(sens, x)
    torch.testing.assert_close(bound, torch.ones_like(bound))
    if sens is not None:
        torch.testing.assert_close(lipschitz_bound(2 * sens, x), 4 * torch.ones_like(bound))


def _check_objective(values, x, kspace, mask, sens, lam, regulariser):
    """Reported objective values: non-increasing, and the last equals the full objective minus
    0.5 ||y||^2 recomputed from the true measurements."""
    steps = values[1:] - values[:-1]
    assert (steps <= 0).all()
    assert (values[-1] < values[0] - 1e-3).all()
    full = 0.5 * (forward_operator(x, mask, sens) - kspace).abs().pow(2).flatten(1).sum(
        1
    ) + lam * regulariser(x)
    constant = 0.5 * kspace.abs().pow(2).flatten(1).sum(1)
    torch.testing.assert_close(values[-1], full - constant, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("coils", [None, 4])
def test_mfista_l1_wavelet_objective_never_increases(coils):
    _, kspace, mask, sens, zero_filled = problem(coils)
    # At this weight and length, plain FISTA's objective goes up at some iterations.
    lam = 1e-2
    x, values = l1_wavelet_recon(zero_filled, mask, sens, lam, 60, "db4", 3, return_objective=True)
    assert values.shape == (61, 1)
    _check_objective(
        values, x, kspace, mask, sens, lam, lambda im: dwt2(im, "db4", 3).abs().flatten(1).sum(1)
    )
    torch.testing.assert_close(values[-1], l1_wavelet_objective(x, zero_filled, mask, sens, lam, "db4", 3))


@pytest.mark.parametrize("coils", [None, 4])
def test_mfista_tv_objective_never_increases(coils):
    _, kspace, mask, sens, zero_filled = problem(coils)
    lam = 1e-2  # plain FISTA is not monotone here
    x, values = tv_recon(
        zero_filled, mask, sens, lam, 60, solver="fista", inner_iters=5, return_objective=True
    )
    _check_objective(values, x, kspace, mask, sens, lam, total_variation)
    torch.testing.assert_close(values[-1], tv_objective(x, zero_filled, mask, sens, lam))


def test_total_variation_values():
    image = torch.zeros(1, 4, 4, dtype=torch.complex128)
    image[0, 1, 1] = 1j  # one pixel: 4 unit jumps, two of them at the same pixel
    assert total_variation(image).item() == pytest.approx(2 + math.sqrt(2))
    assert total_variation(torch.full((1, 4, 4), 3.0 + 1j)).item() == pytest.approx(0, abs=1e-12)


@pytest.mark.parametrize("coils", [None, 4])
def test_reconstructions_beat_zero_filled(coils):
    x, _, mask, sens, zero_filled = problem(coils)
    baseline = psnr(x, zero_filled)
    # Wavelet sparsity of a 32x32 image pays off at one level (coarser levels are a few pixels).
    wavelet = psnr(x, l1_wavelet_recon(zero_filled, mask, sens, 3e-3, 30, wavelet="db4", levels=1))
    tv_pdhg = psnr(x, tv_recon(zero_filled, mask, sens, 3e-3, 30, solver="pdhg"))
    tv_fista = psnr(x, tv_recon(zero_filled, mask, sens, 3e-3, 30, solver="fista", inner_iters=5))
    assert wavelet > baseline + 0.75, (wavelet, baseline)
    assert tv_pdhg > baseline + 2, (tv_pdhg, baseline)
    assert tv_fista > baseline + 2, (tv_fista, baseline)


@pytest.mark.parametrize("coils", [None, 4])
def test_tv_solvers_agree_on_objective(coils):
    _, _, mask, sens, zero_filled = problem(coils)
    lam = 1e-2
    start = tv_objective(zero_filled, zero_filled, mask, sens, lam)
    fista = tv_objective(
        tv_recon(zero_filled, mask, sens, lam, 100, solver="fista"), zero_filled, mask, sens, lam
    )
    pdhg = tv_objective(
        tv_recon(zero_filled, mask, sens, lam, 100, solver="pdhg"), zero_filled, mask, sens, lam
    )
    # Both cover nearly all of the descent from the zero-filled start, and land close together
    # (on this problem, 100 iterations leave both within 1% of the descent of a 1000-iteration run).
    assert ((start - fista) > 0).all()
    assert ((pdhg - fista).abs() < 0.03 * (start - fista)).all(), (start, fista, pdhg)


# ----------------------------------------------------------------------------------------------
# Model interface, tuning, persistence, gradients
# ----------------------------------------------------------------------------------------------


def test_compressed_sensing_module_matches_solver():
    _, kspace, mask, sens, zero_filled = problem(4)
    model = CompressedSensing("l1_wavelet", lam=3e-3, num_iters=5, wavelet="haar", levels=2)
    assert list(model.parameters()) == []
    expected = l1_wavelet_recon(zero_filled, mask, sens, 3e-3, 5, wavelet="haar", levels=2)
    torch.testing.assert_close(model(kspace, MRIPhysics(mask, sens)), expected)
    # zero_filled overrides A^H y: a shifted image changes the output.
    shifted = model(kspace, MRIPhysics(mask, sens, zero_filled=zero_filled + 0.1))
    assert (shifted - expected).abs().max() > 1e-3
    restored = from_record(to_record(model, tuning=[{"lam": 3e-3, "psnr": 1.0, "ssim": 0.5}]))
    assert (restored.method, restored.lam, restored.num_iters) == ("l1_wavelet", 3e-3, 5)
    torch.testing.assert_close(restored(kspace, MRIPhysics(mask, sens)), expected)


def test_bad_options_raise_naming_them():
    with pytest.raises(ValueError, match="wavelet_levels"):
        CompressedSensing("l1_wavelet", 1e-3, 5, wavelet_levels=3)
    with pytest.raises(ValueError, match="'dictionary'"):
        CompressedSensing("dictionary", 1e-3, 5)
    with pytest.raises(ValueError, match="'admm'"):
        CompressedSensing("tv", 1e-3, 5, solver="admm")
    with pytest.raises(ValueError, match="kind"):
        from_record({"kind": "modl", "method": "tv", "lam": 1e-3, "num_iters": 5})
    with pytest.raises(ValueError, match="num_iters"):
        from_record({"kind": "classical", "method": "tv", "lam": 1e-3})


def test_tune_regularization_picks_the_clearly_best_lam():
    # Two batches (single-coil): a negligible weight leaves the aliasing, a huge one flattens the
    # image towards its mean; a moderate weight is clearly best.
    batches = []
    for shift in (0, 3):
        x, mask = phantom().roll(shift, -1), mask_4x()
        kspace = forward_operator(x, mask)
        batches.append(Batch(kspace=kspace, mask=mask[None], target=x, fnames=[f"v{shift}.h5"], slices=[0]))
    lams = [1e-7, 3e-3, 10.0]
    best, table = tune_regularization("tv", lams, batches, num_iters=20, solver="pdhg")
    assert best == 3e-3
    assert [row["lam"] for row in table] == lams
    assert set(table[0]) == {"lam", "psnr", "ssim"}
    psnrs = [row["psnr"] for row in table]
    assert psnrs[1] > psnrs[0] + 2 and psnrs[1] > psnrs[2] + 2, psnrs
    assert table[1]["ssim"] > table[0]["ssim"]
    # The table holds the mean slice PSNR of exactly that reconstruction.
    model = CompressedSensing("tv", 3e-3, 20, solver="pdhg")
    direct = np.mean([psnr(b.target, model(b.kspace, MRIPhysics(b.mask))) for b in batches])
    assert psnrs[1] == pytest.approx(direct, rel=1e-9)
    with pytest.raises(ValueError, match="empty"):
        tune_regularization("tv", [], batches, num_iters=20, solver="pdhg")


@pytest.mark.parametrize(
    "method, options",
    [
        ("l1_wavelet", {"wavelet": "db4", "levels": 2}),
        ("tv", {"solver": "fista", "inner_iters": 3}),
        ("tv", {"solver": "pdhg"}),
    ],
)
@pytest.mark.parametrize("coils", [None, 4])
def test_gradients_reach_zero_filled(method, options, coils):
    _, kspace, mask, sens, zero_filled = problem(coils)
    zero_filled = zero_filled.to(torch.complex64).requires_grad_(True)
    sens = None if sens is None else sens.to(torch.complex64)
    model = CompressedSensing(method, 3e-3, 5, **options)
    model(kspace.to(torch.complex64), MRIPhysics(mask, sens, zero_filled=zero_filled)).abs().pow(
        2
    ).sum().backward()
    grad = zero_filled.grad
    assert torch.isfinite(torch.view_as_real(grad)).all()
    assert grad.abs().max() > 1e-3


# ----------------------------------------------------------------------------------------------
# scripts/tune_classical.py
# ----------------------------------------------------------------------------------------------


def _load_script():
    pytest.importorskip(
        "smug.data.datasets", reason="smug.data.datasets (and smug.data.fastmri_io) not available"
    )
    spec = importlib.util.spec_from_file_location("tune_classical", REPO / "scripts" / "tune_classical.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tune_classical_script_writes_model_and_table(tmp_path, monkeypatch):
    script = _load_script()
    width = N
    items = []
    for shift in (0, 5, 9):
        x = phantom().roll(shift, -2)[0]
        items.append({"kspace": forward_operator(x[None], mask_4x())[0], "mask": mask_4x(), "target": x})
    seen = {}

    def fake_select_slices(paths, num_slices):
        seen["select"] = (list(paths), num_slices)
        return list(range(num_slices))

    def fake_dataset(refs, mask, sens_dir):
        seen["dataset"] = (mask.shape, sens_dir)
        return [{**items[i], "fname": f"vol{i}.h5", "slice": 0} for i in refs]

    monkeypatch.setattr(script, "select_slices", fake_select_slices)
    monkeypatch.setattr(script, "SliceDataset", fake_dataset)
    monkeypatch.setattr(script, "load_mask", lambda path: torch.zeros(width, dtype=torch.bool))
    out, table = tmp_path / "cs" / "model.pt", tmp_path / "cs" / "tuning.csv"
    script.main(
        ["--method", "tv", "--lams", "1e-7", "3e-3", "10", "--num-iters", "10", "--solver", "fista"]
        + ["--inner-iters", "3", "--val", "a.h5", "b.h5", "--mask", "m.npz", "--val-slices", "3"]
        + ["--batch-size", "2", "--out", str(out), "--table", str(table), "--device", "cpu"]
    )
    assert seen == {"select": (["a.h5", "b.h5"], 3), "dataset": ((width,), None)}
    record = torch.load(out, weights_only=True)
    assert record["kind"] == "classical" and record["method"] == "tv" and record["lam"] == 3e-3
    assert record["num_iters"] == 10
    assert record["solver_kwargs"]["solver"] == "fista" and record["solver_kwargs"]["inner_iters"] == 3
    assert [row["lam"] for row in record["tuning"]] == [1e-7, 3e-3, 10.0]
    assert "git_commit" in record["provenance"]
    model = from_record(record)
    assert isinstance(model, CompressedSensing) and model.lam == 3e-3
    lines = table.read_text().splitlines()
    assert lines[0] == "lam,psnr,ssim" and len(lines) == 4
    assert float(lines[2].split(",")[1]) == pytest.approx(record["tuning"][1]["psnr"])
    assert not list(out.parent.glob(".*.part"))


def test_tune_classical_script_rejects_bad_input(tmp_path):
    script = _load_script()
    common = [
        "--val",
        "a.h5",
        "--mask",
        "m.npz",
        "--out",
        str(tmp_path / "m.pt"),
        "--table",
        str(tmp_path / "t.csv"),
    ]
    with pytest.raises(SystemExit, match="lam"):
        script.main(["--method", "l1_wavelet", "--lams", "-1", *common])
    with pytest.raises(SystemExit, match="m.npz"):
        script.main(["--method", "l1_wavelet", "--lams", "1e-3", "--device", "cpu", *common])
    assert not (tmp_path / "m.pt").exists()
