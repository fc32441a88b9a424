"""A crafted or damaged ``model.pt`` is refused before anything is built: one ModelFileError (a
ValueError) whose message starts with the file's path and names the offending key, and a script that
loads it prints one ``error:`` line (the README's "Reliability" section)."""

from __future__ import annotations

import copy
import os
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from smug.models import build_model, CompressedSensing, denoisers, DnCNN, load_method, ModelFileError
from smug.models import to_record
from smug.study import METHODS, spec_settings
from tests.workflow_utils import REPO, TINY_CONFIG, deep_update

CONFIG = deep_update(yaml.safe_load((REPO / "config/config.yaml").read_text()), TINY_CONFIG)


def _trained(name: str = "modl") -> dict:
    """The record scripts/train.py writes for ``name`` (tiny DnCNN denoiser), untrained weights."""
    spec = {"name": name, "kind": METHODS[name].kind, "seed": 0, **spec_settings(name, CONFIG)}
    return {
        "spec": spec,
        "state_dict": build_model(spec["kind"], spec["model"], spec.get("smoothing")).state_dict(),
    }


def _set(*keys, value):
    def change(record):
        for key in keys[:-1]:
            record = record[key]
        record[keys[-1]] = value

    return change


def _drop(*keys):
    def change(record):
        for key in keys[:-1]:
            record = record[key]
        del record[keys[-1]]

    return change


def _rename(old: str, new: str):
    def change(record):
        record["state_dict"][new] = record["state_dict"].pop(old)

    return change


# name: (base record, change, what the message says after "{path}")
CRAFTED = {
    "model_is_a_list": ("modl", _set("spec", "model", value=[1, 2]), ": spec.model is a list, not a mapping"),
    "model_is_a_string": (
        "modl",
        _set("spec", "model", value="dncnn"),
        ": spec.model is a str, not a mapping",
    ),
    "args_are_a_list": (
        "modl",
        _set("spec", "model", "denoiser_args", value=[4, 3]),
        ": spec.model.denoiser_args is a list, not a mapping",
    ),
    "unknown_argument": (
        "modl",
        _set("spec", "model", "denoiser_args", "evil", value=1),
        ": spec.model.denoiser_args has unknown key 'evil'; valid: in_chans, out_chans, num_chans, num_layers",
    ),
    "unknown_model_key": (
        "modl",
        _set("spec", "model", "evil", value=1),
        ": spec.model has unknown key 'evil'",
    ),
    "no_model": ("modl", _drop("spec", "model"), ": spec has no 'model' section"),
    "no_required_setting": (
        "modl",
        _drop("spec", "model", "num_unrolls"),
        ": spec.model has no 'num_unrolls'",
    ),
    "no_smoothing": ("smug", _drop("spec", "smoothing"), ": spec has no 'smoothing' section"),
    "wrong_type": (
        "modl",
        _set("spec", "model", "num_unrolls", value="4"),
        ": spec.model.num_unrolls is '4', not int",
    ),
    "not_finite": (
        "smug",
        _set("spec", "smoothing", "sigma", value=float("nan")),
        ": spec.smoothing.sigma is nan",
    ),
    "unknown_denoiser": (
        "modl",
        _set("spec", "model", "denoiser", value="resnet"),
        ": spec.model.denoiser is 'resnet'",
    ),
    "kind_is_a_list": (
        "modl",
        _set("spec", "kind", value=["modl"]),
        " is not a model saved by this pipeline: spec.kind is ['modl']",
    ),
    "spec_is_a_string": (
        "modl",
        _set("spec", value="modl"),
        " is not a model saved by this pipeline: spec is a str",
    ),
    "wrong_state_dict_keys": (
        "modl",
        _rename("denoiser.last.bias", "evil"),
        ": state_dict lacks 'denoiser.last.bias', which the spec's network holds",
    ),
    "extra_state_dict_key": (
        "modl",
        _set("state_dict", "evil", value=torch.zeros(1)),
        ": state_dict has 'evil', which the spec's network does not hold",
    ),
    "wrong_shape": (
        "modl",
        _set("state_dict", "denoiser.last.bias", value=torch.zeros(3)),
        r": state_dict['denoiser.last.bias'] has shape (3,), but the spec's network needs (2,)",
    ),
    "not_a_tensor": (
        "modl",
        _set("state_dict", "denoiser.last.bias", value=[0.0, 0.0]),
        ": state_dict['denoiser.last.bias'] is a list, not a tensor",
    ),
    "complex_weights": (
        "modl",
        _set("state_dict", "denoiser.last.bias", value=torch.zeros(2, dtype=torch.complex64)),
        ": state_dict['denoiser.last.bias'] holds torch.complex64 values",
    ),
    "state_dict_is_a_list": ("modl", _set("state_dict", value=[]), ": state_dict is a list, not a mapping"),
    "num_layers_beyond_limit": (
        "modl",
        _set("spec", "model", "denoiser_args", "num_layers", value=10**6),
        ": spec.model.denoiser_args.num_layers is 1000000, beyond the limit of 1000 layers",
    ),
    "num_chans_beyond_limit": (
        "modl",
        _set("spec", "model", "denoiser_args", "num_chans", value=10**6),
        ": spec.model.denoiser_args.num_chans is 1000000, beyond the limit of 16384 channels",
    ),
    "parameters_beyond_limit": (
        "modl",
        _set("spec", "model", "denoiser_args", value={"num_chans": 16384, "num_layers": 8}),
        ": spec.model asks for 14,496,333,827 parameters, beyond the limit of 1,000,000,000",
    ),
    "encoder_beyond_limit": (
        "weighted_smug",
        _set("spec", "smoothing", "weight_encoder", "num_blocks", value=10**6),
        ": spec.smoothing.weight_encoder.num_blocks is 1000000, beyond the limit of 1000 layers",
    ),
    "unet_beyond_limit": (
        "unet",
        _set("spec", "model", "num_pool_layers", value=64),
        ": spec.model.num_pool_layers is 64, beyond the limit of 16 pooling layers",
    ),
    "invalid_value": (
        "modl",
        _set("spec", "model", "denoiser_args", "num_layers", value=1),
        ": spec does not describe a valid modl network: DnCNN: num_layers must be at least 2",
    ),
    "not_a_record": (None, lambda r: [1, 2, 3], ": the file holds a list, not a saved model record"),
    "unknown_kind": (
        None,
        lambda r: {"kind": "hologram"},
        " is not a model saved by this pipeline: kind is 'hologram', not one of denoiser, modl",
    ),
    "untrained_beyond_limit": (
        None,
        lambda r: {"kind": "untrained", "channels": 10**9},
        ": record.channels is 1000000000, beyond the limit of 16384 channels",
    ),
    "classical_wrong_type": (
        None,
        lambda r: {**to_record(CompressedSensing("tv", 1e-3, 2, solver="fista")), "lam": [1]},
        ": record.lam is [1], not float",
    ),
    "classical_options_a_list": (
        None,
        lambda r: {**to_record(CompressedSensing("tv", 1e-3, 2, solver="fista")), "solver_kwargs": [1]},
        ": record.solver_kwargs is a list, not a mapping",
    ),
}


def _write(tmp_path: Path, case: str) -> tuple[Path, str]:
    """The crafted record ``case`` as ``{tmp_path}/{case}/model.pt``, and the message it must give."""
    base, change, message = CRAFTED[case]
    record = copy.deepcopy(_trained(base)) if base else {}
    changed = change(record)
    path = tmp_path / case / "model.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(record if changed is None else changed, path)
    return path, f"{path}{message}"


@pytest.mark.parametrize("case", CRAFTED)
def test_crafted_record_is_refused_naming_the_file_and_the_key(tmp_path, case):
    path, message = _write(tmp_path, case)
    with pytest.raises(ModelFileError) as info:
        load_method(path)
    assert isinstance(info.value, ValueError)
    assert str(info.value).startswith(message), str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "case", ["num_layers_beyond_limit", "num_chans_beyond_limit", "parameters_beyond_limit"]
)
def test_oversized_network_is_refused_before_any_weight_is_allocated(tmp_path, monkeypatch, case):
    """Nothing is built but on the ``meta`` device, which allocates nothing: no DnCNN is constructed
    with real memory, the refusal is immediate and the process does not grow."""
    path, message = _write(tmp_path, case)
    devices = []

    class Spy(DnCNN):
        def __init__(self, in_chans: int = 2, out_chans: int = 2, num_chans: int = 64, num_layers: int = 5):
            devices.append(torch.empty(0).device.type)  # where its weights are about to be made
            super().__init__(in_chans, out_chans, num_chans, num_layers)

    monkeypatch.setitem(denoisers.DENOISERS, "dncnn", Spy)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    with pytest.raises(ModelFileError, match=re.escape(message)):
        load_method(path)
    assert time.perf_counter() - start < 5
    assert set(devices) <= {"meta"}
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak < 200 * 1024  # KiB on Linux


def test_records_within_the_limits_load_their_own_weights(tmp_path):
    for name in ("modl", "weighted_smug", "rs_e2e", "unet"):
        record = _trained(name)
        torch.save(record, tmp_path / f"{name}.pt")
        model, _ = load_method(tmp_path / f"{name}.pt")
        loaded = model.state_dict()
        assert loaded.keys() == record["state_dict"].keys(), name
        assert all(torch.equal(loaded[key], value) for key, value in record["state_dict"].items()), name


def test_limits_leave_room_for_the_configured_networks():
    """The study's configured sizes are at least 4 times below the limits a record is held to."""
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    sections = [config["model"][name] for name in denoisers.DENOISERS] + [
        config["model"],
        config["smoothing"],
        config["smoothing"]["weight_encoder"],
        config["baselines"]["unet"]["model"],
    ]
    sizes = [
        (key, value) for section in sections for key, value in section.items() if key in denoisers.SIZE_LIMITS
    ]
    assert {key for key, _ in sizes} >= {"num_chans", "num_layers", "num_dubs", "num_unrolls", "num_samples"}
    assert all(4 * value <= denoisers.SIZE_LIMITS[key][0] for key, value in sizes), sizes


# The script end to end: the cases, a record that is no dict and an unknown kind.
SCRIPT_CASES = [
    "model_is_a_list",
    "model_is_a_string",
    "unknown_argument",
    "no_model",
    "kind_is_a_list",
    "wrong_state_dict_keys",
    "wrong_shape",
    "not_a_tensor",
    "num_layers_beyond_limit",
    "num_chans_beyond_limit",
    "not_a_record",
    "unknown_kind",
]


@pytest.mark.parametrize("case", SCRIPT_CASES)
def test_a_script_reports_a_crafted_record_in_one_line(tmp_path, case):
    path, message = _write(tmp_path, case)
    run = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "reconstruct.py"), "--model", str(path)]
        + ["--files", str(tmp_path / "file1000001.h5"), "--out-dir", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=120,
    )
    assert run.returncode == 1, run.stderr
    assert "Traceback" not in run.stderr
    errors = [line for line in run.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and errors[0].startswith(f"error: {message}"), run.stderr
    assert not (tmp_path / "out").exists()


def test_a_stage_starting_from_a_record_that_is_no_network_is_named(tmp_path):
    """--init naming a zero-filled (or CS, untrained) record: one message naming the file, not
    a KeyError on its missing spec."""
    from smug.training import initialise

    path = tmp_path / "zero_filled.pt"
    torch.save({"kind": "zero_filled"}, path)
    model_cfg = dict(
        denoiser="dncnn",
        denoiser_args=dict(num_chans=4, num_layers=3),
        num_unrolls=2,
        lam=1.0,
        learn_lam=False,
        cg_max_iter=5,
        cg_tol=1e-6,
    )
    spec = {"name": "modl", "kind": "modl"}
    with pytest.raises(
        ValueError,
        match=f"modl starts from a trained denoiser or unrolled network, but --init {path} is a 'zero_filled' model",
    ):
        initialise(build_model("modl", model_cfg, None), spec, str(path), torch.device("cpu"))
