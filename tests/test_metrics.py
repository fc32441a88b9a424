"""Tests for smug.evaluation.metrics and smug.training.losses against independent formulas and skimage."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from smug.training import SSIMLoss, get_loss, l1_loss, mse_loss, ssim_loss
from smug.evaluation import METRIC_FUNCS, mean_std_match, mse, nmse, psnr, ssim


def _volume_pair(seed: int, shape=(3, 16, 20)) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    gt = rng.uniform(0.0, 1.0, size=shape)
    pred = gt + 0.1 * rng.standard_normal(shape)
    return gt, pred


def _reference_ssim_2d(x: np.ndarray, y: np.ndarray, data_range: float, win: int = 7) -> float:
    """SSIM written out window by window: uniform window, valid region, sample covariance."""
    c1 = (0.01 * data_range) ** 2
    c2 = (0.03 * data_range) ** 2
    values = []
    for i in range(x.shape[0] - win + 1):
        for j in range(x.shape[1] - win + 1):
            px = x[i : i + win, j : j + win].ravel()
            py = y[i : i + win, j : j + win].ravel()
            mx, my = px.mean(), py.mean()
            vx = px.var(ddof=1)
            vy = py.var(ddof=1)
            cxy = ((px - mx) * (py - my)).sum() / (px.size - 1)
            values.append(((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2)))
    return float(np.mean(values))


def test_mse_and_nmse_match_formulas():
    gt, pred = _volume_pair(0)
    diff_sq = sum(float(d) ** 2 for d in (gt - pred).ravel())
    assert mse(gt, pred) == pytest.approx(diff_sq / gt.size, rel=1e-12)
    assert nmse(gt, pred) == pytest.approx(diff_sq / float((gt**2).sum()), rel=1e-12)
    assert nmse(gt, gt) == 0.0


def test_psnr_matches_formula_with_volume_max_and_explicit_maxval():
    gt, pred = _volume_pair(1)
    gt[1] *= 3.0  # the volume maximum lives in one slice
    mse_value = np.mean((gt - pred) ** 2)
    assert psnr(gt, pred) == pytest.approx(10 * np.log10(gt.max() ** 2 / mse_value), rel=1e-10)
    assert psnr(gt, pred, maxval=2.0) == pytest.approx(10 * np.log10(4.0 / mse_value), rel=1e-10)


def test_ssim_matches_window_by_window_formula_and_skimage():
    gt, pred = _volume_pair(2, shape=(2, 10, 11))
    data_range = gt.max()
    by_hand = np.mean([_reference_ssim_2d(g, p, data_range) for g, p in zip(gt, pred)])
    by_skimage = np.mean([structural_similarity(g, p, data_range=data_range) for g, p in zip(gt, pred)])
    assert ssim(gt, pred) == pytest.approx(by_hand, abs=1e-10)
    assert ssim(gt, pred) == pytest.approx(by_skimage, abs=1e-12)
    assert ssim(gt, pred) < 0.99


def test_ssim_uses_whole_volume_max_not_per_slice_max():
    gt, pred = _volume_pair(3, shape=(2, 12, 12))
    gt[0] *= 0.2
    pred[0] *= 0.2
    volume_max = gt.max()
    expected = np.mean([structural_similarity(g, p, data_range=volume_max) for g, p in zip(gt, pred)])
    per_slice = np.mean([structural_similarity(g, p, data_range=g.max()) for g, p in zip(gt, pred)])
    assert abs(expected - per_slice) > 1e-3  # the test can tell the two conventions apart
    assert ssim(gt, pred) == pytest.approx(expected, abs=1e-12)


def test_identical_images_score_perfectly():
    gt, _ = _volume_pair(4)
    assert ssim(gt, gt) == pytest.approx(1.0, abs=1e-12)
    with np.errstate(divide="ignore"):  # zero error: PSNR is +inf by definition
        assert np.isinf(psnr(gt, gt))
    target = torch.from_numpy(gt[:, None])
    loss = SSIMLoss()(target, target, target.flatten(1).amax(1))
    assert loss.item() == pytest.approx(0.0, abs=1e-10)


def test_metric_funcs_registry():
    assert set(METRIC_FUNCS) == {"NMSE", "PSNR", "SSIM"}
    assert METRIC_FUNCS["SSIM"] is ssim


@pytest.mark.parametrize("func", [mse, nmse, psnr, ssim])
def test_shape_mismatch_names_both_shapes(func):
    gt = np.ones((2, 8, 8))
    pred = np.ones((2, 8, 9))
    with pytest.raises(ValueError, match=r"\(2, 8, 8\).*\(2, 8, 9\)"):
        func(gt, pred)


def test_ssim_rejects_non_volume_input():
    with pytest.raises(ValueError, match=r"3-D.*\(8, 8\)"):
        ssim(np.ones((8, 8)), np.ones((8, 8)))


def test_ssim_loss_agrees_with_skimage_and_has_gradients():
    rng = np.random.default_rng(5)
    # Local variances comparable to C2, so the covariance normalisation visibly changes SSIM.
    target_np = rng.uniform(0.4, 0.6, size=(2, 1, 14, 15))
    pred_np = target_np + 0.05 * rng.standard_normal(target_np.shape)
    data_range_np = np.array([1.0, 2.0])

    def skimage_mean_ssim(sample_covariance: bool) -> float:
        return np.mean(
            [
                structural_similarity(t[0], p[0], data_range=r, use_sample_covariance=sample_covariance)
                for t, p, r in zip(target_np, pred_np, data_range_np)
            ]
        )

    expected = skimage_mean_ssim(True)
    assert abs(expected - skimage_mean_ssim(False)) > 3e-4
    pred = torch.tensor(pred_np, dtype=torch.float32, requires_grad=True)
    target = torch.tensor(target_np, dtype=torch.float32)
    loss = SSIMLoss()(pred, target, torch.tensor(data_range_np, dtype=torch.float32))
    assert loss.item() == pytest.approx(1.0 - expected, abs=1e-4)
    loss.backward()
    assert pred.grad is not None and torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0


def test_ssim_loss_rejects_bad_data_range_and_shapes():
    x = torch.rand(2, 1, 8, 8)
    with pytest.raises(ValueError, match="data_range"):
        SSIMLoss()(x, x, torch.ones(3))
    with pytest.raises(ValueError, match=r"\(2, 1, 8, 8\).*\(2, 1, 8, 9\)"):
        SSIMLoss()(x, torch.rand(2, 1, 8, 9), torch.ones(2))


def test_get_loss_by_name():
    rng = torch.Generator().manual_seed(0)
    pred = torch.rand(2, 1, 9, 9, generator=rng)
    target = torch.rand(2, 1, 9, 9, generator=rng)
    assert get_loss("mse") is mse_loss and get_loss("l1") is l1_loss and get_loss("ssim") is ssim_loss
    assert get_loss("mse")(pred, target).item() == pytest.approx(((pred - target) ** 2).mean().item())
    assert get_loss("l1")(pred, target).item() == pytest.approx((pred - target).abs().mean().item())
    data_range = target.flatten(1).amax(1)
    assert get_loss("ssim")(pred, target).item() == pytest.approx(
        SSIMLoss()(pred, target, data_range).item(), abs=1e-7
    )
    with pytest.raises(ValueError, match="huber.*l1, mse, ssim"):
        get_loss("huber")


def test_mean_std_match_takes_recon_moments():
    rng = np.random.default_rng(6)
    reference = rng.uniform(0.0, 1.0, size=(4, 5))
    recon = 3.0 * reference + 2.0 + 0.01 * rng.standard_normal(reference.shape)
    matched = mean_std_match(reference, recon)
    assert matched.mean() == pytest.approx(recon.mean(), rel=1e-12)
    assert matched.std() == pytest.approx(recon.std(), rel=1e-12)
    assert np.max(np.abs(matched - recon)) < 0.05  # an affine copy is matched almost exactly
    with pytest.raises(ValueError, match="constant"):
        mean_std_match(np.ones((3, 3)), recon[:3, :3])
