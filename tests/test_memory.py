"""Memory-bounded backward passes (issue 27, library part): checkpointing each unroll and denoising the
smoothing's M draws in chunks give the plain backward's result and gradients, redraw the same noise
when they recompute, record the trace once and count batch statistics once."""

from __future__ import annotations

import copy

import pytest
import torch

from smug.models import MoDL, WeightEncoder
from smug.models.didn import DIDN
from smug.models.dncnn import DnCNN
from smug.models.ista_net import ISTANetPlus
from smug.models.modl import RSE2E
from smug.models.reconstruct import reconstruct
from smug.models.smoothing import denoise_in_chunks, smoothed_denoise
from smug.models.unet import UNet
from smug.models.unrolled import UnrollTrace, set_memory
from smug.models.varnet import E2EVarNet
from smug.training import end_to_end_loss, train_stage, unrolled_stability_loss
from tests.test_backbones import multicoil_batch
from tests.test_stale_checkpoints import tiny  # noqa: F401 (a fixture: tiny synthetic data and specs)

# Every mechanism is checked on each device this machine has (CUDA's checkpointing replays its own
# generator, which is what a GPU training run relies on).
DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU")),
]

SIZES = {
    "varnet": {"num_cascades": 2, "chans": 4, "pools": 1, "estimate_sens": False},
    "ista": {"num_phases": 3, "num_filters": 4},
}


def network(backbone: str, smoothing: str) -> torch.nn.Module:
    """A small double-precision network of ``backbone`` in training mode; MoDL's DnCNN and Weighted
    SMUG's encoder carry batch normalisation (``modl_didn``: MoDL over a DIDN, without any)."""
    torch.manual_seed(0)
    options = {}
    if smoothing != "none":
        options = {"smoothing": smoothing, "sigma": 0.05, "num_samples": 5}
    if smoothing == "weighted":
        options["weight_encoder"] = WeightEncoder(num_chans=4, num_blocks=2)
    if backbone == "modl":
        model = MoDL(DnCNN(num_chans=4, num_layers=3), num_unrolls=3, lam=0.5, **options)
    elif backbone == "modl_didn":
        model = MoDL(DIDN(num_chans=4, num_dubs=1), num_unrolls=3, lam=0.5, **options)
    else:
        model = (E2EVarNet if backbone == "varnet" else ISTANetPlus)(**SIZES[backbone], **options)
    return model.double().train()


def _run(model, batch, loss_fn):
    """Loss, its gradients with respect to every parameter and to the k-space, the generator's state
    after the pass and every batch normalisation's running averages."""
    kspace = batch.kspace.clone().requires_grad_()
    generator = torch.Generator(device=kspace.device).manual_seed(7)
    loss = loss_fn(model, batch.__class__(**{**batch.__dict__, "kspace": kspace}), generator)
    model.zero_grad()
    loss.backward()
    grads = [p.grad.clone() if p.grad is not None else None for p in model.parameters()]
    stats = [b.clone() for name, b in model.named_buffers() if "running" in name]
    return loss.detach(), grads, kspace.grad.clone(), generator.get_state(), stats


def _assert_same(plain, bounded):
    loss, grads, kgrad, state, stats = plain
    loss2, grads2, kgrad2, state2, stats2 = bounded
    assert torch.allclose(loss, loss2, rtol=1e-10, atol=1e-12)
    assert torch.allclose(kgrad, kgrad2, rtol=1e-8, atol=1e-12)
    for g, g2 in zip(grads, grads2):
        assert (g is None) == (g2 is None)
        if g is not None:
            assert torch.allclose(g, g2, rtol=1e-8, atol=1e-12)
    assert torch.equal(state, state2)  # the same draws were taken, and as many
    for s, s2 in zip(stats, stats2):
        assert torch.allclose(s, s2, rtol=1e-12, atol=1e-14)  # batch statistics counted once


def _stability(model, batch, generator):
    return unrolled_stability_loss(model, batch, generator, target="denoised_gt", lambda_rec=1.0)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("backbone", ["modl", "varnet", "ista"])
@pytest.mark.parametrize("smoothing", ["none", "smug", "weighted"])
def test_checkpointed_unrolls_give_the_plain_backwards_loss_and_gradients(backbone, smoothing, device, gen):
    batch = multicoil_batch(gen).to(device)
    loss_fn = end_to_end_loss if smoothing == "none" else _stability
    model = network(backbone, smoothing).to(device)
    bounded = set_memory(copy.deepcopy(model), checkpoint_unrolls=True)
    _assert_same(_run(model, batch, loss_fn), _run(bounded, batch, loss_fn))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("backbone", ["modl_didn", "varnet", "ista"])
@pytest.mark.parametrize("smoothing", ["smug", "weighted"])
@pytest.mark.parametrize("checkpoint_unrolls", [True, False])
def test_chunked_draws_give_the_plain_backwards_loss_and_gradients(
    backbone, smoothing, checkpoint_unrolls, device, gen
):
    """Chunks with checkpoint_unrolls (then MoDL's CG solve is checkpointed on its own) and without
    (Weighted SMUG's encoder, with batch normalisation, is recomputed too: its running averages must
    count the batch once)."""
    batch = multicoil_batch(gen).to(device)
    model = network(backbone, smoothing).to(device)
    bounded = set_memory(copy.deepcopy(model), checkpoint_unrolls=checkpoint_unrolls, sample_chunk=2)
    _assert_same(_run(model, batch, _stability), _run(bounded, batch, _stability))


@pytest.mark.parametrize("chunk,checkpoint_unrolls", [(None, True), (2, True), (2, False)])
def test_rs_e2e_over_a_checkpointed_network_keeps_its_gradients(chunk, checkpoint_unrolls, gen):
    """RS-E2E's copies reconstructed two at a time (three copies: a full and a partial chunk), each
    chunk's unrolls checkpointed, or each chunk recomputed as a whole."""
    batch = multicoil_batch(gen)
    torch.manual_seed(0)
    # MoDL's DnCNN normalises over the batch, so chunks of copies are checked on E2E-VarNet (whose
    # instance normalisation is per copy)
    network = MoDL(DnCNN(num_chans=4, num_layers=3), num_unrolls=2, lam=0.5)
    if chunk is not None:
        network = E2EVarNet(**SIZES["varnet"])
    model = RSE2E(network, sigma=0.01, num_samples=3).double().train()
    bounded = set_memory(copy.deepcopy(model), checkpoint_unrolls=checkpoint_unrolls, sample_chunk=chunk)
    assert bounded.sample_chunk == chunk
    _assert_same(_run(model, batch, end_to_end_loss), _run(bounded, batch, end_to_end_loss))


@pytest.mark.parametrize("checkpoint_unrolls", [True, False])
def test_chunked_draws_are_computed_twice_and_the_unrolls_around_them_not_checkpointed(checkpoint_unrolls, gen):
    """Chunks recompute themselves in the backward pass; checkpointing the unroll around them would
    run the regulariser a third time, so a smoothed network with chunks does not (5 draws in chunks
    of 2: 3 chunks per unroll, 3 unrolls, each chunk run forward and once more backward)."""
    batch = multicoil_batch(gen)
    model = set_memory(network("varnet", "smug"), checkpoint_unrolls=checkpoint_unrolls, sample_chunk=2)
    calls = []
    for cascade in model.cascades:  # counted in forward itself: checkpoints recompute without hooks

        def counted(image, forward=cascade.model.forward):
            calls.append(1)
            return forward(image)

        cascade.model.forward = counted
    _run(model, batch, _stability)
    stability_targets = len(model.cascades)  # each cascade's regulariser on the target, once
    assert len(calls) == 2 * 3 * len(model.cascades) + stability_targets


@pytest.mark.parametrize("checkpoint_unrolls,solves", [(True, 2 * 3), (False, 3)])
def test_with_chunked_draws_modls_cg_solve_is_checkpointed_on_its_own(checkpoint_unrolls, solves, gen, monkeypatch):
    """Where chunks stop the unroll from being checkpointed, MoDL's CG solve still is: each of the 3
    unrolls' solves runs once more in the backward pass, instead of its iterations being kept."""
    import smug.mri.data_consistency as dc

    calls = []
    solve = dc.conjugate_gradient
    monkeypatch.setattr(dc, "conjugate_gradient", lambda *a, **k: (calls.append(1), solve(*a, **k))[1])
    model = set_memory(network("modl_didn", "smug"), checkpoint_unrolls=checkpoint_unrolls, sample_chunk=2)
    _run(model, multicoil_batch(gen), _stability)
    assert len(calls) == solves


def test_rs_e2e_chunks_over_batch_normalisation_in_training_are_refused(gen):
    batch = multicoil_batch(gen)
    model = RSE2E(MoDL(DnCNN(num_chans=4, num_layers=3), num_unrolls=2, lam=0.5), num_samples=3).double()
    set_memory(model, sample_chunk=2)
    with pytest.raises(ValueError, match="memory.sample_chunk: the network RS-E2E smooths uses batch"):
        reconstruct(model.train(), batch, torch.Generator())
    with torch.no_grad():  # evaluation statistics are fixed: chunks are exact
        assert torch.isfinite(reconstruct(model.eval(), batch, torch.Generator())).all()


def test_a_checkpointed_forward_records_each_unroll_once_and_draws_as_the_plain_one(gen):
    batch = multicoil_batch(gen)
    model = network("modl", "smug")
    bounded = set_memory(copy.deepcopy(model), checkpoint_unrolls=True)
    traces = []
    for m in (model, bounded):
        trace = UnrollTrace()
        out = reconstruct(m, batch, torch.Generator().manual_seed(3), trace)
        traces.append((out, trace))
    (out, trace), (out2, trace2) = traces
    assert torch.allclose(out, out2)
    assert len(trace2.inputs) == len(trace2.smoothing) == len(trace2.denoised) == 3
    for a, b in zip(trace.denoised, trace2.denoised):
        assert torch.allclose(a, b)


def test_chunking_a_denoiser_with_batch_statistics_in_training_is_refused_naming_the_setting(gen):
    denoiser = DnCNN(num_chans=4, num_layers=3).double().train()
    image = 0.2 * torch.randn(2, 8, 8, dtype=torch.complex128, generator=gen)
    with pytest.raises(ValueError, match="memory.sample_chunk: DnCNN uses batch normalisation"):
        smoothed_denoise(denoiser, image, 0.05, 4, None, sample_chunk=2)
    # in evaluation mode its statistics are fixed, and chunks are exact
    denoiser.eval()
    plain, _ = smoothed_denoise(denoiser, image, 0.05, 4, torch.Generator().manual_seed(1))
    chunked, _ = smoothed_denoise(denoiser, image, 0.05, 4, torch.Generator().manual_seed(1), sample_chunk=3)
    assert torch.allclose(plain, chunked)
    # and through MoDL, whose regulariser is the DnCNN, in training
    modl = network("modl", "smug")
    set_memory(modl, sample_chunk=2)
    with pytest.raises(ValueError, match="memory.sample_chunk: MoDL's regulariser uses batch normalisation"):
        reconstruct(modl, multicoil_batch(gen), torch.Generator().manual_seed(0))
    with torch.no_grad():
        reconstruct(modl.eval(), multicoil_batch(gen), torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="chunk size must be at least 1"):
        denoise_in_chunks(UNet(2, 2, 4, 1), torch.zeros(2, 2, 8, 8), 0)
    with pytest.raises(ValueError, match="sample_chunk must be at least 1"):
        set_memory(denoiser, sample_chunk=0)


def test_a_training_stage_with_bounded_memory_ends_with_the_plain_stages_weights(tiny, tmp_path):
    """SMUG from random weights (DnCNN, with batch normalisation), one epoch, once plainly and once
    with every unroll checkpointed: the same weights, running averages included."""
    records = []
    for name, memory in (("plain", None), ("bounded", {"checkpoint_unrolls": True, "sample_chunk": None})):
        spec = {**tiny["spec"]("smug", 1), "init": None}
        out = tmp_path / name
        torch.set_num_threads(1)
        train_stage(
            spec,
            tiny["volumes"]["train"],
            tiny["volumes"]["val"],
            str(tiny["masks"][0]),
            out / "model.pt",
            out / "metrics.csv",
            tmp_path / f"{name}.ckpt",
            torch.device("cpu"),
            memory=memory,
        )
        records.append(torch.load(out / "model.pt", weights_only=True))
    plain, bounded = records
    assert plain["spec"] == bounded["spec"]  # the memory options are no setting of the weights
    for key, value in plain["state_dict"].items():
        assert torch.allclose(value.float(), bounded["state_dict"][key].float(), rtol=1e-4, atol=1e-6), key
