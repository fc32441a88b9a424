"""Adjoint identities of the forward operators and agreement of the data-consistency solvers."""

import pytest
import torch

from smug.mri.data_consistency import cg_dc, closed_form_dc, conjugate_gradient, data_consistency
from smug.mri import adjoint_operator, apply_column_mask, forward_operator, normal_operator
from smug.mri import normal_operator_fn
from tests.conftest import random_complex, random_sens_maps


def _random_mask(width, gen, batch=None):
    shape = (width,) if batch is None else (batch, width)
    return torch.rand(shape, generator=gen) < 0.4


def _inner(a, b):
    return (a.conj() * b).sum()


@pytest.mark.parametrize("coils", [None, 4])
@pytest.mark.parametrize("per_sample_mask", [False, True])
def test_adjoint_identity(coils, per_sample_mask, gen):
    b, h, w = 3, 8, 10
    sens = None if coils is None else random_sens_maps(b, coils, h, w, gen)
    mask = _random_mask(w, gen, b if per_sample_mask else None)
    x = random_complex((b, h, w), gen)
    y = random_complex((b, coils or 1, h, w), gen)
    lhs = _inner(forward_operator(x, mask, sens), y)
    rhs = _inner(x, adjoint_operator(y, mask, sens))
    torch.testing.assert_close(lhs, rhs, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("coils", [None, 4])
@pytest.mark.parametrize("per_sample_mask", [False, True])
@pytest.mark.parametrize("shape", [(8, 10), (7, 9)])
def test_normal_operator_is_adjoint_of_forward(coils, per_sample_mask, shape, gen):
    """The column-FFT shortcut equals A^H A, for even and odd sizes (where the shifts differ)."""
    b, (h, w) = 3, shape
    sens = None if coils is None else random_sens_maps(b, coils, h, w, gen)
    mask = _random_mask(w, gen, b if per_sample_mask else None)
    x = random_complex((b, h, w), gen)
    expected = adjoint_operator(forward_operator(x, mask, sens), mask, sens)
    torch.testing.assert_close(normal_operator(x, mask, sens), expected, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="mask width 3 does not match image width"):
        normal_operator(x, torch.ones(3, dtype=torch.bool), sens)


def test_mask_width_mismatch_is_named(gen):
    with pytest.raises(ValueError, match="mask width 7 does not match k-space width 10"):
        apply_column_mask(random_complex((1, 1, 4, 10), gen), torch.ones(7, dtype=torch.bool))


def _dense_solve(z, y, mask, lam, sens):
    """Solve (A^H A + lam I) x = A^H y + lam z by building the matrix column by column."""
    b, h, w = z.shape
    n = h * w
    out = []
    for i in range(b):
        basis = torch.eye(n, dtype=z.dtype).reshape(n, h, w)
        s = None if sens is None else sens[i : i + 1].expand(n, -1, -1, -1)
        m = mask if mask.ndim == 1 else mask[i]
        cols = normal_operator(basis, m, s).reshape(n, n).T + lam * torch.eye(n, dtype=z.dtype)
        rhs = (
            adjoint_operator(y[i : i + 1], m, None if sens is None else sens[i : i + 1]) + lam * z[i : i + 1]
        )
        out.append(torch.linalg.solve(cols, rhs.reshape(n)).reshape(h, w))
    return torch.stack(out)


def test_closed_form_matches_dense_solve_and_cg(gen):
    b, h, w, lam = 2, 6, 8, 0.7
    mask = _random_mask(w, gen, b)
    z = random_complex((b, h, w), gen)
    y = apply_column_mask(random_complex((b, 1, h, w), gen), mask)
    closed = closed_form_dc(z, adjoint_operator(y, mask), mask, lam)
    torch.testing.assert_close(closed, _dense_solve(z, y, mask, lam, None), rtol=1e-9, atol=1e-9)
    # Single-coil A^H A has eigenvalues 0 and 1 only, so CG converges in at most two steps.
    cg = cg_dc(z, adjoint_operator(y, mask), mask, lam, None, max_iter=5, tol=1e-12)
    assert (closed - cg).abs().max() < 1e-5


def test_closed_form_agrees_with_cg_in_float32(gen):
    b, h, w, lam = 2, 16, 16, 0.05
    mask = _random_mask(w, gen)
    z = random_complex((b, h, w), gen, torch.complex64)
    y = apply_column_mask(random_complex((b, 1, h, w), gen, torch.complex64), mask)
    closed = closed_form_dc(z, adjoint_operator(y, mask), mask, lam)
    cg = cg_dc(z, adjoint_operator(y, mask), mask, lam, None, max_iter=10, tol=1e-7)
    assert (closed - cg).abs().max() / closed.abs().max() < 1e-5


def test_multicoil_cg_matches_dense_solve(gen):
    b, c, h, w, lam = 2, 3, 5, 6, 0.3
    sens = random_sens_maps(b, c, h, w, gen)
    mask = _random_mask(w, gen)
    z = random_complex((b, h, w), gen)
    y = apply_column_mask(random_complex((b, c, h, w), gen), mask)
    cg = cg_dc(z, adjoint_operator(y, mask, sens), mask, lam, sens, max_iter=60, tol=1e-12)
    torch.testing.assert_close(cg, _dense_solve(z, y, mask, lam, sens), rtol=1e-8, atol=1e-8)


def test_cg_stops_each_sample_on_its_own(gen):
    """A sample that starts at its solution does no iterations while the other keeps going."""
    b, c, h, w, lam = 2, 3, 5, 6, 0.3
    sens = random_sens_maps(b, c, h, w, gen)
    mask = _random_mask(w, gen)
    z = random_complex((b, h, w), gen)
    y = apply_column_mask(random_complex((b, c, h, w), gen), mask)
    exact = _dense_solve(z, y, mask, lam, sens)
    rhs = adjoint_operator(y, mask, sens) + lam * z

    def apply_matrix(x):
        return normal_operator(x, mask, sens) + lam * x

    x0 = torch.stack([exact[0], z[1]])
    x, iterations = conjugate_gradient(apply_matrix, rhs, x0, max_iter=50, tol=1e-8)
    assert iterations[0].item() == 0
    assert iterations[1].item() > 2
    torch.testing.assert_close(x, exact, rtol=1e-6, atol=1e-6)


def test_dc_is_differentiable_through_cg(gen):
    b, c, h, w = 1, 2, 4, 6
    sens = random_sens_maps(b, c, h, w, gen)
    mask = _random_mask(w, gen)
    z = random_complex((b, h, w), gen).requires_grad_(True)
    y = apply_column_mask(random_complex((b, c, h, w), gen), mask).requires_grad_(True)
    lam = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
    out = data_consistency(z, adjoint_operator(y, mask, sens), mask, lam, sens, max_iter=30, tol=1e-10)
    out.abs().pow(2).sum().backward()
    for t in (z, y, lam):
        assert t.grad is not None and torch.isfinite(t.grad.abs()).all() and t.grad.abs().sum() > 0
    # Compare with the gradient of the exact solve.
    z2 = z.detach().clone().requires_grad_(True)
    _dense_solve(z2, y.detach(), mask, 0.5, sens).abs().pow(2).sum().backward()
    torch.testing.assert_close(z.grad, z2.grad, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("coils", [None, 4])
@pytest.mark.parametrize("per_sample_mask", [False, True])
@pytest.mark.parametrize("width", [10, 9])
def test_prepared_normal_operator_equals_normal_operator(coils, per_sample_mask, width, gen):
    """The solver's closure (signs folded into the maps for even widths) is A^H A exactly."""
    b, h = 3, 6
    sens = None if coils is None else random_sens_maps(b, coils, h, width, gen)
    mask = _random_mask(width, gen, b if per_sample_mask else None)
    x = random_complex((b, h, width), gen)
    normal = normal_operator_fn(mask, sens, width)
    torch.testing.assert_close(normal(x), normal_operator(x, mask, sens), rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="mask width 10 does not match image width 12"):
        normal_operator_fn(torch.ones(10, dtype=torch.bool), sens, 12)


@pytest.mark.parametrize("coils", [None, 4])
@pytest.mark.parametrize("per_sample_mask", [False, True])
def test_prepared_normal_operator_backward_is_the_operator_itself(coils, per_sample_mask, gen):
    """The closure's backward (A^H A applied to the incoming gradient, as A^H A is Hermitian) equals
    autograd through the unprepared operator, first and second order."""
    b, h, width = 3, 6, 10
    sens = None if coils is None else random_sens_maps(b, coils, h, width, gen)
    mask = _random_mask(width, gen, b if per_sample_mask else None)
    weight = random_complex((b, h, width), gen)
    normal = normal_operator_fn(mask, sens, width)
    x = random_complex((b, h, width), gen).requires_grad_(True)
    (grad,) = torch.autograd.grad((weight.conj() * normal(x)).real.sum(), x)
    x_ref = x.detach().clone().requires_grad_(True)
    (grad_ref,) = torch.autograd.grad((weight.conj() * normal_operator(x_ref, mask, sens)).real.sum(), x_ref)
    torch.testing.assert_close(grad, grad_ref, rtol=1e-12, atol=1e-12)
    torch.autograd.gradcheck(lambda v: normal(v), (x.detach().clone().requires_grad_(True),))
    torch.autograd.gradgradcheck(lambda v: normal(v), (x.detach().clone().requires_grad_(True),))
