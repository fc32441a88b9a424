"""The plan before a cluster run (scripts/plan.py, scripts/benchmarks/planning.py and calibration.py):
the dry run's jobs, the scaling of a calibration into each job's prediction, and a tiny run that
writes the table and warns for an under-requested rule."""

from __future__ import annotations

import csv
import math
import subprocess
import sys
from pathlib import Path

import pytest

from tests.workflow_utils import BIN, REPO, TINY_CONFIG, copy_workflow, deep_update, write_config

sys.path.insert(0, str(REPO / "scripts"))
try:
    from benchmarks.calibration import Calibration
    from benchmarks.planning import (
        FAILED,
        PLAN_COLUMNS,
        Job,
        gpu_hours,
        load_config,
        parse_dry_run,
        predict,
        suggested_resources,
    )
finally:
    sys.path.pop(0)

DRY_RUN = """
[Fri Dec  4 18:49:03 2026]
rule masks:
    output: resources/masks/2x.npz
    jobid: 1
    reason: Forced execution
    resources: tmpdir=/tmp, runtime=15, mem_mb=2000, mem=2 GB, mem_mib=1908
[Fri Dec  4 18:49:03 2026]
rule train:
    output: results/models/smug/seed1/model.pt
    wildcards: model=smug, seed=1
    threads: 8
    resources: tmpdir=/tmp, runtime=1440, mem_mb=32000, mem=32 GB, gres=gpu:a100:2
[Fri Dec  4 18:49:15 2026]
localrule all:
    input: results/tables/robustness.csv
    jobid: 0
    resources: tmpdir=/tmp
"""


# A calibration whose scaling the tests check by hand: seconds of a step, a forward pass and an attack
# gradient, and MiB.
KNOWN_CALIBRATION = Calibration(
    base_mib=100, train_step_s=2.0, forward_s=0.8, attack_step_s=0.5, train_peak_mib=300, attack_peak_mib=50
)


def test_the_dry_runs_jobs_are_read_with_their_wildcards_and_requests():
    masks, train, final = parse_dry_run(DRY_RUN)
    assert (masks.rule, masks.wildcards, masks.runtime, masks.mem_mb, masks.gpu) == ("masks", {}, 15, 2000, 0)
    assert (train.rule, train.name, train.runtime, train.mem_mb, train.gpu) == (
        "train",
        "model=smug,seed=1",
        1440,
        32000,
        2,
    )
    assert (final.rule, final.runtime, final.gpu) == ("all", None, 0)


def test_a_calibration_scales_by_the_jobs_steps_and_the_margin():
    config = _tiny_config()
    found = KNOWN_CALIBRATION
    specs = []
    jobs = [
        Job("train", {"model": "modl", "seed": "0"}, 1, 200, 1),
        Job("attack", {"seed": "0", "model": "smug", "attack": "pgd_kspace_linf"}, 600, 100000, 1),
        Job("attack", {"seed": "0", "model": "cs_tv", "attack": "pgd_kspace_linf"}, 30, 4000, 1),
        Job("figures", {}, 60, 4000, 0),
    ]
    rows = predict(config, jobs, lambda spec: specs.append(spec["name"]) or found, margin=1.5)
    assert [row["rule"] for row in rows] == ["train", "attack", "attack", "figures"] and set(rows[0]) == set(
        PLAN_COLUMNS
    )
    assert specs == ["modl", "smug"]  # one calibration per model; the classical solver is not calibrated
    # modl: 2 epochs x (every training slice, 2 volumes x 2 slices / batch 2 = 2 steps, x 2 s
    # + 2 validation slices x 0.8 s per evaluation batch of 4)
    train, synthetic = config["training"], config["synthetic"]
    assert train["epochs"]["modl"] == 2 and train["batch_size"] == 2 and train["train_slices"] is None
    assert synthetic["volumes"]["train"] * synthetic["slices_per_volume"] == 4
    assert config["evaluation"]["batch_size"] == 4 and train["val_slices"] == 2
    expected = 2 * (2 * 2.0 + 2 * 0.8 / 4) * 1.5 / 60
    assert rows[0]["predicted_runtime_min"] == pytest.approx(expected, abs=0.005)
    assert rows[0]["predicted_memory_mib"] == round(400 * 1.5)
    assert rows[0]["status"] == "under-requested memory"  # 600 MiB predicted against 200 MB
    # smug's k-space attack: 1 batch x 3 eps x steps x EOT draws (smoothed) gradients of 0.5 s
    pgd = config["evaluation"]["pgd"]
    gradients = (
        1 * len(config["evaluation"]["attacks"]["pgd_kspace_linf"]["eps"]) * pgd["steps"] * pgd["eot_samples"]
    )
    assert rows[1]["predicted_runtime_min"] == pytest.approx(gradients * 0.5 * 1.5 / 60, abs=0.005)
    assert rows[1]["status"] == "ok"
    assert (
        rows[2]["status"] == rows[3]["status"] == "not calibrated"
        and rows[2]["predicted_runtime_min"] is None
    )
    with_startup = predict(config, jobs, lambda spec: found, margin=1.5, startup_s=6.0)
    assert with_startup[0]["predicted_runtime_min"] == pytest.approx(expected + 6.0 * 1.5 / 60, abs=0.005)
    assert (
        with_startup[0]["basis"].startswith("6 s start-up + ")
        and with_startup[3]["predicted_runtime_min"] is None
    )
    predicted, requested = gpu_hours(rows)
    assert predicted == pytest.approx(
        (rows[0]["predicted_runtime_min"] + rows[1]["predicted_runtime_min"]) / 60
    )
    assert requested == pytest.approx(30 / 60)  # the uncalibrated GPU job counts as requested
    # the requests that cover each calibrated rule: 10-minute steps, 1,000 MB steps of the MiB predicted
    attack_runtime = 10 * math.ceil(rows[1]["predicted_runtime_min"] / 10)
    assert suggested_resources(rows) == {
        "train": {"runtime": 10, "mem_mb": 1000},  # 0.23 min, 600 MiB = 629 MB
        "attack": {"runtime": attack_runtime, "mem_mb": 1000},
    }
    # a protocol attack's job takes rule attack's entry (cluster.resources has no protocol_attack)
    protocol = {**rows[1], "rule": "protocol_attack", "predicted_runtime_min": attack_runtime + 5}
    assert suggested_resources([rows[1], protocol]) == {
        "attack": {"runtime": attack_runtime + 10, "mem_mb": 1000}
    }


def test_a_failed_calibration_marks_its_models_jobs_and_the_others_are_still_planned():
    """A calibration killed for memory (as RS-E2E's at the paper size beside another large process)
    leaves that model's jobs unplanned with the reason, not the whole plan."""
    config = _tiny_config()
    found = KNOWN_CALIBRATION

    def calibrate(spec):
        if spec["name"] == "smug":
            raise ValueError(
                "calibration of smug: the process was killed by SIGKILL, most likely for lack of memory"
            )
        return found

    jobs = [
        Job("train", {"model": "smug", "seed": "0"}, 60, 4000, 1),
        Job("train", {"model": "modl", "seed": "0"}, 60, 4000, 1),
        Job("attack", {"seed": "0", "model": "smug", "attack": "pgd_kspace_linf"}, 600, 4000, 1),
    ]
    smug_train, modl_train, smug_attack = predict(config, jobs, calibrate, margin=1.5)
    for row in (smug_train, smug_attack):
        assert row["status"] == FAILED and row["predicted_runtime_min"] is None and "SIGKILL" in row["basis"]
    assert modl_train["status"] == "ok" and modl_train["predicted_runtime_min"] > 0


def test_a_killed_measuring_process_is_named_with_its_signal(monkeypatch):
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        from benchmarks import memory
    finally:
        sys.path.pop(0)

    def killed(command, **kwargs):
        return subprocess.CompletedProcess(command, -9, stdout="", stderr="")

    monkeypatch.setattr(memory.subprocess, "run", killed)
    with pytest.raises(ValueError, match="calibration of x: the process was killed by SIGKILL, most likely"):
        memory.run_in_fresh_process("calibration", {}, "calibration of x")


def _tiny_config() -> dict:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = write_config(Path(folder), TINY_CONFIG)
        return load_config([str(path)], REPO)


@pytest.mark.slow
def test_a_tiny_plan_writes_every_job_and_warns_for_an_under_requested_rule(tmp_path):
    root = copy_workflow(tmp_path)
    overrides = deep_update(
        TINY_CONFIG, {"cluster": {"resources": {"train": {"runtime": 60, "mem_mb": 1, "cpus": 1, "gpu": 1}}}}
    )
    config = write_config(root, overrides)
    target = "results/models/modl/seed0/model.pt"
    done = subprocess.run(
        [str(BIN / "python"), "scripts/plan.py", target, "--configfile", str(config), "--device", "cpu",
         "--out", "results/plan.csv", "--threads", "1"],
        cwd=root, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    with open(root / "results" / "plan.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == PLAN_COLUMNS
    train = {row["job"]: row for row in rows if row["rule"] == "train"}
    assert set(train) == {"model=denoiser,seed=0", "model=modl,seed=0"}
    for row in train.values():
        assert row["status"] == "under-requested memory" and float(row["predicted_memory_mib"]) > 1
        assert math.isfinite(float(row["predicted_runtime_min"]))
        assert f"rule train ({row['job']}): requests 60 min and 1 MB" in done.stderr
    assert {row["rule"] for row in rows} >= {"synthetic_dataset", "masks", "train"}
    assert "GPU-hours" in done.stdout and not (root / "results" / "models").exists()  # nothing was run
    # the request that would cover both training jobs, printed for cluster.resources
    assert "(cluster.resources):\n  train: {runtime: " in done.stdout and ", mem_mb: " in done.stdout
