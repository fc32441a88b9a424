"""Tests of the networks in smug.models: shapes, gradients, determinism, residual structure,
batch independence, parameter counts and the registry's errors. Sizes are tiny on purpose."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from smug.models import DIDN, DnCNN, UNet, WeightEncoder, build_denoiser, count_parameters

TINY_KWARGS = {
    "didn": {"num_chans": 8, "num_dubs": 2},
    "dncnn": {"num_chans": 8, "num_layers": 5},
    "unet": {"chans": 4, "num_pool_layers": 2},
}
ODD_SHAPES = [(16, 20), (17, 23)]


def _tiny(name: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return build_denoiser(name, **TINY_KWARGS[name])


def _images(batch: int, height: int, width: int, seed: int = 1, chans: int = 2) -> torch.Tensor:
    return torch.randn(batch, chans, height, width, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", sorted(TINY_KWARGS))
@pytest.mark.parametrize("shape", ODD_SHAPES)
def test_output_shape_equals_input_shape(name, shape):
    model = _tiny(name).eval()
    x = _images(2, *shape)
    with torch.no_grad():
        assert model(x).shape == x.shape


def test_unet_channel_counts_are_configurable():
    torch.manual_seed(0)
    model = UNet(in_chans=1, out_chans=3, chans=4, num_pool_layers=2).eval()
    with torch.no_grad():
        assert model(_images(1, 17, 23, chans=1)).shape == (1, 3, 17, 23)


@pytest.mark.parametrize("name", sorted(TINY_KWARGS))
def test_gradients_reach_every_parameter(name):
    model = _tiny(name).train()
    x = _images(2, 17, 23)
    target = _images(2, 17, 23, seed=2)
    # A fresh DIDN is the identity (zero last convolution), so the layers before it receive their
    # first gradient after one step has moved that convolution.
    nn.functional.mse_loss(model(x), target).backward()
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    model.zero_grad()
    # a plain sum would be invariant to batch-norm inputs and hide missing gradients
    nn.functional.mse_loss(model(x), target).backward()
    for param_name, param in model.named_parameters():
        assert param.grad is not None, param_name
        assert param.grad.abs().sum() > 0, param_name


def test_fresh_didn_is_the_identity():
    model = _tiny("didn").eval()
    x = _images(2, 17, 23)
    with torch.no_grad():
        torch.testing.assert_close(model(x), x)


def test_weight_encoder_gradients_reach_every_parameter():
    torch.manual_seed(0)
    model = WeightEncoder(num_chans=8).train()
    ((model(_images(3, 16, 20)) - 0.25) ** 2).sum().backward()
    for param_name, param in model.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, param_name


@pytest.mark.parametrize("name", sorted(TINY_KWARGS))
def test_same_seed_gives_same_network_and_output(name):
    first, second, other = _tiny(name, seed=3), _tiny(name, seed=3), _tiny(name, seed=4)
    for (key, a), (_, b) in zip(first.state_dict().items(), second.state_dict().items()):
        assert torch.equal(a, b), key
    x = _images(1, 16, 20)
    with torch.no_grad():
        assert torch.equal(first.eval()(x), second.eval()(x))
    # (a fresh DIDN computes the identity whatever its seed, so compare the weights, not outputs)
    assert any(
        not torch.equal(a, b) for a, b in zip(first.state_dict().values(), other.state_dict().values())
    )


@pytest.mark.parametrize("name, last_layer", [("didn", "output"), ("dncnn", "last")])
@pytest.mark.parametrize("shape", ODD_SHAPES)
def test_residual_network_is_identity_when_last_layer_is_zero(name, last_layer, shape):
    model = _tiny(name).eval()
    x = _images(2, *shape)
    with torch.no_grad():
        layer = getattr(model, last_layer)
        torch.nn.init.normal_(layer.weight, std=0.1)  # a trained last layer, as after pre-training
        assert not torch.allclose(model(x), x, atol=1e-3)
        layer.weight.zero_()
        layer.bias.zero_()
        # exact equality also checks that DIDN's padding and crop line up for odd sizes
        assert torch.equal(model(x), x)


@pytest.mark.parametrize("name", sorted(TINY_KWARGS) + ["weight_encoder"])
def test_eval_batch_equals_items_one_by_one(name):
    if name == "weight_encoder":
        torch.manual_seed(0)
        model = WeightEncoder(num_chans=8)
    else:
        model = _tiny(name)
    # a training step moves batch-norm running statistics away from their (0, 1) start
    model.train()
    with torch.no_grad():
        model(_images(4, 17, 23, seed=5) * 3 + 1)
    model.eval()
    batch = _images(4, 17, 23)
    with torch.no_grad():
        together = model(batch)
        one_by_one = torch.cat([model(batch[i : i + 1]) for i in range(batch.shape[0])])
    torch.testing.assert_close(together, one_by_one, rtol=1e-4, atol=1e-5)


def test_weight_encoder_gives_one_weight_in_unit_interval_per_item():
    torch.manual_seed(0)
    model = WeightEncoder(num_chans=8, num_blocks=5).eval()
    x = torch.cat([_images(3, 17, 23), 5 * _images(2, 17, 23, seed=7)])
    with torch.no_grad():
        weights = model(x)
    assert weights.shape == (5,)
    assert torch.all((weights > 0) & (weights < 1))
    assert weights.unique().numel() == 5  # the weights depend on the item


def test_weight_encoder_default_matches_weighted_smug():
    model = WeightEncoder()
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 5 and all(c.out_channels == 16 and c.bias is None for c in convs)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 5
    # 5 convs (2->16, then 16->16), 5 batch norms (2 x 16 each), Linear(16 -> 1)
    assert count_parameters(model) == 9 * 16 * (2 + 4 * 16) + 5 * 32 + 17


def test_didn_paper_size_parameter_count():
    # measured: 3,372,984 with 64 channels and 2 down-up blocks; the SMUG paper's code is "about 3.37 M"
    count = count_parameters(DIDN(num_chans=64, num_dubs=2))
    assert 3.36e6 < count < 3.38e6
    assert count == 3_372_984
    assert count_parameters(DIDN()) == count  # defaults are the conference configuration


def test_dncnn_default_is_modl_size():
    model = DnCNN()
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 5 and all(c.kernel_size == (3, 3) for c in convs)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 4
    # convs 2->64, 3 x 64->64 without bias, 64->2 with bias; 4 batch norms of 2 x 64
    assert count_parameters(model) == 9 * 64 * (2 + 3 * 64) + (9 * 64 * 2 + 2) + 4 * 128


def test_unet_parameter_count_matches_fastmri_layout():
    def conv_block(i, o):
        return 9 * i * o + 9 * o * o

    chans, pools = 32, 4
    expected = conv_block(1, chans)
    ch = chans
    for _ in range(pools - 1):
        expected += conv_block(ch, 2 * ch)
        ch *= 2
    expected += conv_block(ch, 2 * ch)
    for _ in range(pools):
        expected += 4 * (2 * ch) * ch + conv_block(2 * ch, ch)
        ch //= 2
    expected += chans * 1 + 1  # final 1x1 conv (32 -> 1) with bias
    assert count_parameters(UNet(1, 1, chans=chans, num_pool_layers=pools)) == expected == 7_756_097


def test_count_parameters_trainable_only():
    model = DnCNN(num_chans=8)
    total = count_parameters(model)
    model.last.requires_grad_(False)
    assert count_parameters(model, trainable_only=True) == total - model.last.weight.numel() - 2
    assert count_parameters(model) == total


def test_registry_builds_each_denoiser_with_its_kwargs():
    assert isinstance(build_denoiser("didn", num_chans=8), DIDN)
    assert isinstance(build_denoiser("DnCNN", num_chans=8), DnCNN)
    unet = build_denoiser("unet", in_chans=1, out_chans=1, chans=4, num_pool_layers=2)
    assert isinstance(unet, UNet)
    assert count_parameters(unet) == count_parameters(UNet(1, 1, chans=4, num_pool_layers=2))


def test_registry_rejects_unknown_name_listing_valid_ones():
    with pytest.raises(ValueError, match=r"'resnet'.*didn, dncnn, unet"):
        build_denoiser("resnet")


def test_registry_rejects_unknown_kwarg_naming_it():
    with pytest.raises(TypeError, match=r"'didn'.*num_res_blocks"):
        build_denoiser("didn", num_res_blocks=2)


@pytest.mark.parametrize(
    "factory, message",
    [
        (lambda: DIDN(num_chans=6), "num_chans"),
        (lambda: DIDN(num_dubs=0), "num_dubs"),
        (lambda: DIDN(in_chans=2, out_chans=1), "global_residual"),
        (lambda: DnCNN(in_chans=2, out_chans=1), "out_chans"),
        (lambda: DnCNN(num_layers=1), "num_layers"),
        (lambda: UNet(drop_prob=1.5), "drop_prob"),
        (lambda: WeightEncoder(num_blocks=0), "num_blocks"),
    ],
)
def test_impossible_configuration_is_rejected(factory, message):
    with pytest.raises(ValueError, match=message):
        factory()


@pytest.mark.parametrize("name", sorted(TINY_KWARGS))
def test_wrong_input_shape_is_rejected_with_the_shape(name):
    model = _tiny(name)
    with pytest.raises(ValueError, match=r"\(2, 3, 16, 20\)"):
        model(torch.zeros(2, 3, 16, 20))
    with pytest.raises(ValueError, match=r"\(2, 16, 20\)"):
        model(torch.zeros(2, 16, 20))


def test_unet_rejects_image_too_small_for_its_pools():
    model = UNet(chans=4, num_pool_layers=4)
    with pytest.raises(ValueError, match="15x40"):
        model(torch.zeros(1, 2, 15, 40))
    with pytest.raises(ValueError, match="16x20"):
        model(torch.zeros(1, 2, 16, 20))  # 1x1 bottleneck
