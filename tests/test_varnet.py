"""E2E-VarNet and fastMRI's published checkpoints (smug.models.varnet, smug.models.fastmri_checkpoints)."""

from __future__ import annotations

import importlib.util
import json
import re

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from smug.attacks import pgd_image_attack, pgd_kspace_attack, reconstruct_perturbed
from smug.data import Batch
from smug.models import (
    E2EVarNet,
    ModelFileError,
    SensitivityNet,
    build_fastmri_model,
    load_fastmri_checkpoint,
    load_method,
)
from smug.models.reconstruct import reconstruct
from smug.models.fastmri_checkpoints import fastmri_key
from smug.models.varnet import center_columns
from smug.mri import MRIPhysics, fft2c, rss
from tests.conftest import random_complex, random_sens_maps
from tests.workflow_utils import REPO, TINY_CONFIG, copy_workflow, deep_update, snakemake, write_config

CONFIG = yaml.safe_load((REPO / "config/config.yaml").read_text())

# ---- fastMRI's parameter layout, written out from its published classes --------------------------
# fastmri/models/unet.py: Unet(in_chans, out_chans, chans, num_pool_layers) holds down_sample_layers
# (ConvBlocks in->chans, then doubling), conv (the bottleneck ConvBlock), up_transpose_conv
# (TransposeConvBlocks) and up_conv (ConvBlocks, the last one followed by a 1x1 Conv2d with bias).
# A ConvBlock's `layers` are [Conv2d 3x3 no bias, InstanceNorm2d, LeakyReLU, Dropout2d] twice (weights
# at indices 0 and 4); a TransposeConvBlock's are [ConvTranspose2d 2x2 no bias, InstanceNorm2d,
# LeakyReLU]. fastmri/models/varnet.py: VarNet holds sens_net.norm_unet.unet (Unet(2, 2, sens_chans,
# sens_pools)) and cascades.<i> with model.unet (Unet(2, 2, chans, pools)), dc_weight (1,) and a
# zero buffer (1, 1, 1, 1, 1).


def fastmri_unet_layout(prefix: str, in_chans: int, out_chans: int, chans: int, pools: int) -> dict:
    layout = {}

    def conv_block(name, cin, cout):
        layout[f"{prefix}{name}.layers.0.weight"] = (cout, cin, 3, 3)
        layout[f"{prefix}{name}.layers.4.weight"] = (cout, cout, 3, 3)

    conv_block("down_sample_layers.0", in_chans, chans)
    ch = chans
    for i in range(1, pools):
        conv_block(f"down_sample_layers.{i}", ch, 2 * ch)
        ch *= 2
    conv_block("conv", ch, 2 * ch)
    for i in range(pools):
        layout[f"{prefix}up_transpose_conv.{i}.layers.0.weight"] = (2 * ch, ch, 2, 2)
        if i < pools - 1:
            conv_block(f"up_conv.{i}", 2 * ch, ch)
            ch //= 2
    conv_block(f"up_conv.{pools - 1}.0", 2 * ch, ch)
    layout[f"{prefix}up_conv.{pools - 1}.1.weight"] = (out_chans, ch, 1, 1)
    layout[f"{prefix}up_conv.{pools - 1}.1.bias"] = (out_chans,)
    return layout


def fastmri_varnet_layout(num_cascades, chans, pools, sens_chans, sens_pools) -> dict:
    layout = fastmri_unet_layout("sens_net.norm_unet.unet.", 2, 2, sens_chans, sens_pools)
    for i in range(num_cascades):
        layout.update(fastmri_unet_layout(f"cascades.{i}.model.unet.", 2, 2, chans, pools))
        layout[f"cascades.{i}.dc_weight"] = (1,)
        layout[f"cascades.{i}.zero"] = (1, 1, 1, 1, 1)
    return layout


def _random_state(layout: dict, seed: int = 0) -> dict:
    gen = torch.Generator().manual_seed(seed)
    state = {key: torch.randn(shape, generator=gen) * 0.1 for key, shape in layout.items()}
    for key in state:
        if key.endswith(".zero"):
            state[key] = torch.zeros(layout[key])
    return state


TINY_VARNET = {"num_cascades": 2, "chans": 4, "pools": 2, "sens_chans": 2, "sens_pools": 1}


@pytest.mark.parametrize(
    "architecture, layout, sizes",
    [
        ("unet", lambda: fastmri_unet_layout("", 1, 1, 32, 4), {}),
        ("varnet", lambda: fastmri_varnet_layout(12, 18, 4, 8, 4), {}),
        ("varnet", lambda: fastmri_varnet_layout(**TINY_VARNET), TINY_VARNET),
    ],
)
def test_the_published_layout_loads_strictly_and_every_weight_arrives(architecture, layout, sizes, tmp_path):
    """fastMRI's published sizes are the defaults; every weight lands on its counterpart."""
    state = _random_state(layout())
    plain, lightning = tmp_path / "plain.pt", tmp_path / "lightning.ckpt"
    torch.save(state, plain)
    torch.save({"state_dict": {f"{architecture}.{k}": v for k, v in state.items()}, "epoch": 3}, lightning)
    for path in (plain, lightning):
        model = load_fastmri_checkpoint(path, architecture, **sizes)
        ours = model.state_dict()
        names = {key: fastmri_key(key, architecture) for key in state}
        assert sorted(name for name in names.values() if name) == sorted(ours)
        assert all(torch.equal(ours[names[key]], value) for key, value in state.items() if names[key])
        assert not model.training


def test_a_checkpoint_of_other_sizes_or_architecture_is_refused_with_the_keys(tmp_path):
    path = tmp_path / "varnet.pt"
    torch.save(_random_state(fastmri_varnet_layout(**TINY_VARNET)), path)
    with pytest.raises(
        ValueError,
        match=r"wrong shape: .*cascades.0.model.unet.down_blocks.0.layers.0.weight \(4, 2, 3, 3\) \(expected \(8, 2, 3, 3\)\)",
    ):
        load_fastmri_checkpoint(path, "varnet", **{**TINY_VARNET, "chans": 8})
    with pytest.raises(ValueError, match=r"missing: .*unet.down_blocks"):
        load_fastmri_checkpoint(path, "unet")
    with pytest.raises(ValueError, match=r"unknown fastMRI architecture 'resnet'"):
        load_fastmri_checkpoint(path, "resnet")
    with pytest.raises(ValueError, match=r"fastMRI varnet has no size depth"):
        load_fastmri_checkpoint(path, "varnet", depth=3)
    state = _random_state(fastmri_varnet_layout(**TINY_VARNET))
    state["cascades.1.dc_weight"] = torch.tensor([float("nan")])
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"cascades.1.dc_weight holds non-finite values"):
        load_fastmri_checkpoint(path, "varnet", **TINY_VARNET)
    torch.save([1, 2], path)
    with pytest.raises(ValueError, match="not a PyTorch state dict"):
        load_fastmri_checkpoint(path, "varnet", **TINY_VARNET)


def _multicoil(gen, coils=3, h=16, w=16):
    mask = torch.zeros(w, dtype=torch.bool)
    mask[::3] = True
    mask[w // 2 - 2 : w // 2 + 2] = True
    sens = random_sens_maps(2, coils, h, w, gen, torch.complex64)
    physics = MRIPhysics(mask, sens)
    target = random_complex((2, h, w), gen, torch.complex64)
    return Batch(kspace=physics.A(target), mask=mask, target=target, sens_maps=sens)


def test_the_fully_sampled_centre_is_the_run_around_the_middle():
    mask = torch.tensor([1, 0, 1, 1, 1, 1, 0, 1], dtype=torch.bool)
    assert center_columns(mask).tolist() == [False, False, True, True, True, True, False, False]
    rows = torch.stack([mask, torch.tensor([0, 0, 0, 1, 1, 0, 0, 0], dtype=torch.bool)])
    assert center_columns(rows)[1].tolist() == [False, False, False, True, True, False, False, False]


def test_estimated_maps_have_unit_root_sum_of_squares(gen):
    batch = _multicoil(gen)
    maps = SensitivityNet(2, 1)(batch.kspace, batch.mask)
    assert maps.shape == batch.kspace.shape
    torch.testing.assert_close(rss(maps, dim=1), torch.ones(2, 16, 16))


def test_a_cascade_with_a_silent_regulariser_restores_the_measured_columns(gen):
    """With ``R = 0`` and ``dc_weight = 1`` a cascade is ``k - M (k - y)``: y on the sampled columns,
    the estimate elsewhere."""
    batch = _multicoil(gen)
    model = E2EVarNet(num_cascades=1, chans=2, pools=1, estimate_sens=False)
    cascade = model.cascades[0]
    cascade.model.forward = lambda image: torch.zeros_like(image)
    start = random_complex(batch.kspace.shape, gen, torch.complex64)
    out = cascade(start, batch.kspace, batch.mask.reshape(1, 1, 1, -1), batch.sens_maps)
    torch.testing.assert_close(out[..., batch.mask], batch.kspace[..., batch.mask])
    torch.testing.assert_close(out[..., ~batch.mask], start[..., ~batch.mask])


@pytest.mark.parametrize("estimate_sens", [False, True])
def test_varnet_reconstructs_and_is_attacked_through_the_one_interface(estimate_sens, gen):
    batch = _multicoil(gen)
    model = E2EVarNet(
        num_cascades=2, chans=4, pools=2, sens_chans=2, sens_pools=1, estimate_sens=estimate_sens
    )
    clean = reconstruct(model, batch, torch.Generator().manual_seed(0))
    assert clean.shape == (2, 16, 16) and clean.is_complex() and torch.isfinite(clean).all()
    for attack, domain in ((pgd_kspace_attack, "kspace"), (pgd_image_attack, "image")):
        delta = attack(model, batch, eps=0.05, steps=1, generator=torch.Generator().manual_seed(1))
        assert delta.abs().max() > 0
        with torch.no_grad():
            assert torch.isfinite(reconstruct_perturbed(model, batch, delta, domain)).all()


def test_single_coil_varnet_uses_unit_maps(gen):
    mask = torch.zeros(16, dtype=torch.bool)
    mask[::2] = True
    target = random_complex((1, 16, 16), gen, torch.complex64)
    batch = Batch(kspace=MRIPhysics(mask).A(target), mask=mask)
    model = build_fastmri_model("varnet", **{**TINY_VARNET, "pools": 1}).eval()
    model.sens_net = None  # the given (unit) maps instead of estimating them
    assert reconstruct(model, batch).shape == (1, 16, 16)


# ---- a published checkpoint as a method of the pipeline ------------------------------------------


def _import_script():
    spec = importlib.util.spec_from_file_location(
        "import_checkpoint", REPO / "scripts" / "import_checkpoint.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _imported(tmp_path, sizes=TINY_VARNET):
    import_checkpoint = _import_script()
    checkpoint, out = tmp_path / "fastmri_varnet.pt", tmp_path / "model.pt"
    state = _random_state(fastmri_varnet_layout(**TINY_VARNET))
    torch.save(state, checkpoint)
    import_checkpoint.main(
        [
            "--checkpoint",
            str(checkpoint),
            "--architecture",
            "varnet",
            "--sizes",
            json.dumps(sizes),
            "--out",
            str(out),
        ]
    )
    return state, out


def test_an_imported_checkpoint_is_a_method_load_method_rebuilds_with_its_weights(tmp_path, gen):
    state, out = _imported(tmp_path)
    model, record = load_method(out)
    assert record["kind"] == "fastmri" and record["architecture"] == "varnet" and isinstance(model, E2EVarNet)
    ours = model.state_dict()
    assert all(
        torch.equal(ours[fastmri_key(k, "varnet")], v) for k, v in state.items() if fastmri_key(k, "varnet")
    )
    maps = random_sens_maps(1, 2, 16, 16, gen)
    mask = torch.zeros(16, dtype=torch.bool)
    mask[::2] = True
    mask[6:10] = True
    kspace = fft2c(maps * random_complex((1, 16, 16), gen).unsqueeze(1)).to(torch.complex64) * mask
    batch = Batch(kspace=kspace, mask=mask, target=None, sens_maps=maps.to(torch.complex64))
    assert reconstruct(model, batch).shape == (1, 16, 16)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"architecture": "resnet"}, "record.architecture is 'resnet', not one of unet, varnet"),
        (
            {"sizes": {**TINY_VARNET, "chans": 8}},
            "state_dict['cascades.0.model.unet.down_blocks.0.layers.0.weight'] has shape",
        ),
        ({"sizes": {**TINY_VARNET, "chans": "many"}}, "record.sizes.chans"),
    ],
    ids=["architecture", "sizes_do_not_fit", "size_not_a_number"],
)
def test_a_tampered_imported_record_is_refused_naming_the_key(tmp_path, change, message):
    _, out = _imported(tmp_path)
    record = torch.load(out, weights_only=True)
    record.update(change)
    torch.save(record, out)
    with pytest.raises(ModelFileError, match=re.escape(message)):
        load_method(out)


def test_a_checkpoint_of_the_wrong_sizes_is_refused_by_the_import_script_in_one_line(tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        _imported(tmp_path, sizes={**TINY_VARNET, "chans": 8})
    message = str(exit_info.value.code)
    assert message.startswith("error: ") and "is not a fastMRI varnet" in message and "\n" not in message
    assert not (tmp_path / "model.pt").exists()


@pytest.mark.parametrize(
    "path, message",
    [
        (
            None,
            "config error: pretrained.fastmri_varnet.path is null: name the fastMRI checkpoint to evaluate fastmri_varnet",
        ),
        ("absent.pt", "config error: pretrained.fastmri_varnet.path: no such file: absent.pt"),
    ],
    ids=["null", "missing"],
)
def test_evaluating_a_published_method_without_its_checkpoint_is_one_line(tmp_path, path, message):
    workdir = copy_workflow(tmp_path)
    models = [*CONFIG["evaluation"]["models"], "fastmri_varnet"]
    overrides = {
        "evaluation": {"models": models},
        "pretrained": {"fastmri_varnet": {"path": path, "sizes": {}}},
    }
    (workdir / "bad.yaml").write_text(yaml.safe_dump(overrides))
    result = snakemake(["-n", "--configfile", "bad.yaml"], workdir, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode != 0 and message in output, output[-2000:]
    assert len(output.strip().splitlines()) <= 6, output


@pytest.mark.slow
def test_a_published_varnet_named_in_the_config_is_evaluated_and_attacked_by_the_workflow(tmp_path):
    workdir = copy_workflow(tmp_path / "run")
    checkpoint = workdir / "fastmri_varnet.pt"
    torch.save(_random_state(fastmri_varnet_layout(**TINY_VARNET)), checkpoint)
    config = deep_update(
        TINY_CONFIG,
        {
            "evaluation": {"models": [*CONFIG["evaluation"]["models"], "fastmri_varnet"]},
            "pretrained": {"fastmri_varnet": {"path": "fastmri_varnet.pt", "sizes": TINY_VARNET}},
        },
    )
    write_config(workdir, config)
    target = "results/eval/seed0/fastmri_varnet.csv"
    result = snakemake([target, "--cores", "2", "--configfile", "tiny.yaml"], workdir, timeout=900)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    scores = pd.read_csv(workdir / target)
    assert {"clean", "pgd_kspace_linf"} <= set(scores["perturbation"]) and np.isfinite(scores["value"]).all()
    assert (workdir / "results/models/fastmri_varnet/model.pt").is_file()
