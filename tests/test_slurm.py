"""Cluster execution: `snakemake --profile slurm` against a real one-node SLURM, and the resources
every rule's job would request under the default config."""

from __future__ import annotations

import re
import shutil

import pandas as pd
import pytest
import torch
import yaml

from smug.utils import limit_threads

from tests import slurm_cluster
from tests.slurm_cluster import ClusterUnavailable, start_cluster, stop_cluster
from tests.workflow_utils import REPO, TINY_CONFIG, copy_workflow, deep_update, snakemake, write_config

GPU_RULES = ("train", "attack", "protocol_attack", "evaluate", "ttt")
# protocol_attack is `use rule attack`: it takes cluster.resources.attack, and has no entry of its own.
RESOURCE_ENTRIES = tuple(rule for rule in GPU_RULES if rule != "protocol_attack")
CPU_RULES = (
    "masks",
    "tune_classical",
    "untrained_method",
    "zero_filled_method",
    "noise",
    "robustness_table",
    "figures",
    "split_list",
    "claims",
)
# Rules that only one data source has: the synthetic dataset, or fastMRI's download and indexing (CPU)
# and sensitivity-map estimation (GPU, multicoil only).
SOURCE_RULES = {
    "synthetic": {"synthetic_dataset": "cpu"},
    "fastmri": {"fetch_fastmri": "cpu", "index_fastmri": "cpu"},
}
# The tiny config cut to two models and one anatomy (no anatomy shift), so the cluster run is a few
# short jobs: data, three split lists, masks, the zero-filled method, two trainings, two attacks,
# one noise file, two evaluations, tables, claims, figures.
SLURM_MODELS = ["zero_filled", "modl"]
SLURM_OVERRIDES = {
    "synthetic": {"anatomies": ["knee"]},
    "data": {"shift_anatomy": None},
    "evaluation": {
        "models": SLURM_MODELS,
        "generators": [],
        "attacks": {"pgd_kspace_linf": {"eps": [0.02]}},
        "unrolls": [1],
        "figure": {"attack": "pgd_kspace_linf", "level": 0.02, "models": SLURM_MODELS},
    },
    "claims": [
        {
            "id": "modl_beats_zero_filled",
            "source": "test",
            "statement": "MoDL is more accurate than zero-filled.",
            "kind": "difference",
            "a": "modl",
            "b": "zero_filled",
            "perturbation": "clean",
            "level": 0.0,
            "metric": "PSNR",
            "direction": "greater",
        },
    ],
}
# One ablation variant, so a model name with the variant's characters (@, =) goes through sbatch.
SLURM_ABLATIONS = {
    "attacks": ["pgd_kspace_linf"],
    "experiments": {
        "unrolls": {
            "methods": ["modl"],
            "variants": [{"model.num_unrolls": 1}],
            "references": [],
            "figure": "bars",
            "diagnostics": False,
        }
    },
}
SLURM_VARIANT = "modl@model.num_unrolls=1"
# Every config shipped in config/; each must ask for GPUs exactly where the rules need them.
CONFIGS = sorted(path.name for path in (REPO / "config").glob("*.yaml"))
# What the test node can give: no GPU and little memory; train takes two CPUs to show threads arrive.
TEST_JOB = {"runtime": 15, "mem_mb": 1000, "cpus": 1, "gpu": 0}


def write_slurm_config(dest, cluster: dict) -> dict:
    """The copy's config/config.yaml rewritten to the tiny config cut down for the cluster run.

    Written in place rather than passed with --configfile, which merges mappings and so could not
    drop the default's attacks.
    """
    path = dest / "config" / "config.yaml"
    config = deep_update(deep_update(yaml.safe_load(path.read_text()), TINY_CONFIG), SLURM_OVERRIDES)
    config["evaluation"]["attacks"] = SLURM_OVERRIDES["evaluation"]["attacks"]
    config["ablations"] = {**config["ablations"], **SLURM_ABLATIONS}
    config["cluster"] = {**config["cluster"], **cluster}
    path.write_text(yaml.safe_dump(config))
    return config


def copy_profile(dest, **settings) -> dict:
    """The repository's profile folder, copied into ``dest/slurm`` with ``settings`` added."""
    shutil.copytree(REPO / "slurm", dest / "slurm")
    path = dest / "slurm" / "config.yaml"
    profile = {**yaml.safe_load(path.read_text()), **settings}
    path.write_text(yaml.safe_dump(profile))
    return profile


def dry_run_jobs(output: str) -> list[tuple[str, dict[str, str]]]:
    """(rule, resources) of every job a dry run lists."""
    jobs = []
    for block in re.split(r"(?m)^(?=(?:local)?rule \w+:$)", output)[1:]:
        rule = re.match(r"(?:local)?rule (\w+):", block).group(1)
        line = re.search(r"(?m)^\s+resources: (.*)$", block)
        resources = dict(item.split("=", 1) for item in line.group(1).split(", ")) if line else {}
        jobs.append((rule, resources))
    return jobs


@pytest.fixture(scope="session")
def running_cluster(tmp_path_factory):
    """One-node SLURM on loopback for the whole session; skips when it cannot be had."""
    try:
        cluster = start_cluster(tmp_path_factory.mktemp("slurm"))
    except ClusterUnavailable as exc:
        pytest.skip(f"no SLURM test cluster: {exc}")
    yield cluster
    stop_cluster(cluster)
    still_running = {name: proc.pid for name, proc in cluster.processes.items() if proc.poll() is None}
    assert not still_running, f"SLURM daemons left running: {still_running}"


def test_cluster_is_unavailable_without_root(monkeypatch, tmp_path):
    """Not root and SLURM missing: the cluster test skips, and the reason says so."""
    monkeypatch.setattr(slurm_cluster.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(slurm_cluster, "missing_programs", lambda: ["slurmd"])
    with pytest.raises(ClusterUnavailable, match="installing them needs root"):
        start_cluster(tmp_path)
    assert not list(tmp_path.iterdir())


def test_limit_threads_caps_torch_and_rejects_zero():
    before = torch.get_num_threads()
    try:
        limit_threads(1)
        assert torch.get_num_threads() == 1
        limit_threads(None)
        assert torch.get_num_threads() == 1
        with pytest.raises(ValueError, match="--threads"):
            limit_threads(0)
    finally:
        torch.set_num_threads(before)


def fastmri_access(dest, config: dict) -> str:
    """An access overlay as a user writes it: a (fake) signed URL per dataset and the hash list."""
    datasets = {
        entry["dataset"] for split in config["fastmri"]["splits"].values() for entry in split.values()
    }
    hashes = dest / "fastmri_sha256.txt"
    hashes.write_text("".join(f"{'0' * 64}  {name}.tar.xz\n" for name in sorted(datasets)))
    urls = {name: f"https://fastmri.invalid/{name}.tar.xz?Signature=x" for name in datasets}
    return str(write_config(dest, {"fastmri": {"urls": urls, "sha256_file": str(hashes)}}, "access.yaml"))


@pytest.mark.parametrize("config_name", CONFIGS)
def test_config_requests_gpus_only_for_gpu_rules(tmp_path, config_name):
    """Dry run of each shipped config (the embedded default and the paper-scale fastMRI configs,
    given fake download links) under the slurm profile: the whole DAG, from data to figures, with
    GPUs requested exactly by the GPU rules; no cluster needed."""
    copy_workflow(tmp_path)
    copy_profile(tmp_path)
    config = yaml.safe_load((REPO / "config" / config_name).read_text())
    source = config.get("data", {}).get("source", "synthetic")
    args = ["-n", "--profile", "slurm", "--configfile", f"config/{config_name}"]
    if source == "fastmri":
        args.append(fastmri_access(tmp_path, config))
    result = snakemake(args, cwd=tmp_path, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "Using profile slurm" in output
    jobs = dry_run_jobs(output)
    rules = {rule for rule, _ in jobs}
    gpu_rules, cpu_rules = set(GPU_RULES), set(CPU_RULES)
    gpu_rules |= {rule for rule, kind in SOURCE_RULES[source].items() if kind == "gpu"}
    cpu_rules |= {rule for rule, kind in SOURCE_RULES[source].items() if kind == "cpu"}
    if source == "fastmri" and config["data"]["challenge"] == "multicoil":
        gpu_rules.add("sens_maps")
    # Every rule but the method-specific ones (a U-Net-only config has no untrained network nor
    # unrolled model for the papers' protocols, and single-coil fastMRI no anatomy shift to adapt to).
    optional = {"untrained_method", "tune_classical", "zero_filled_method", "ttt", "protocol_attack"}
    assert (gpu_rules | cpu_rules) - optional <= rules, sorted((gpu_rules | cpu_rules) - optional - rules)
    for rule, resources in jobs:
        if rule in gpu_rules:
            assert int(resources.get("gpu", 0)) >= 1, (rule, resources)
        elif rule in cpu_rules:
            assert "gpu" not in resources and "gpu_model" not in resources, (rule, resources)
        if rule != "all":
            assert int(resources["runtime"]) > 0 and int(resources["mem_mb"]) > 0, (rule, resources)
            # Unset partition and account leave the choice to the cluster.
            assert "slurm_partition" not in resources and "slurm_account" not in resources


CLUSTER_SETTINGS = {
    "cpu_partition": "cpu_q",
    "gpu_partition": "gpu_q",
    "account": "lab1",
    "gpu_model": "a100",
    "constraint": "intel&ib",
    "qos": "normal",
    "slurm_extra": "--mail-type=FAIL",
    "resources": {"figures": {"partition": "short"}},
}


@pytest.mark.parametrize("gpu_request", ["gpus", "gres"])
def test_partitions_gpu_request_and_pass_through_come_from_config(tmp_path, gpu_request):
    """CPU rules in the CPU partition, GPU rules in the GPU partition asking for their GPU the way
    the config says, a per-rule partition, and account, constraint, QoS and extra options on every job."""
    copy_workflow(tmp_path)
    copy_profile(tmp_path)
    config = write_config(tmp_path, {"cluster": {**CLUSTER_SETTINGS, "gpu_request": gpu_request}})
    result = snakemake(["-n", "--profile", "slurm", "--configfile", str(config)], cwd=tmp_path, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    jobs = [(rule, res) for rule, res in dry_run_jobs(output) if rule != "all"]
    assert {rule for rule, _ in jobs} >= set(GPU_RULES) | set(CPU_RULES)
    for rule, resources in jobs:
        expected = "short" if rule == "figures" else "gpu_q" if rule in GPU_RULES else "cpu_q"
        assert resources["slurm_partition"] == expected, (rule, resources)
        assert resources["slurm_account"] == "lab1" and resources["constraint"] == "intel&ib", (
            rule,
            resources,
        )
        assert resources["qos"] == "normal" and resources["slurm_extra"] == "--mail-type=FAIL", (
            rule,
            resources,
        )
        if rule in GPU_RULES and gpu_request == "gpus":
            assert resources["gpu"] == "1" and resources["gpu_model"] == "a100" and "gres" not in resources
        elif rule in GPU_RULES:
            assert resources["gres"] == "gpu:a100:1" and "gpu" not in resources, (rule, resources)
        else:
            assert not {"gpu", "gpu_model", "gres"} & set(resources), (rule, resources)
    # The configfile merges into config/config.yaml, so the per-rule resources are still there.
    train = {(res["runtime"], res["mem_mb"]) for rule, res in jobs if rule == "train"}
    assert train == {("60", "4000")}


def test_unknown_rule_in_cluster_resources_is_named(tmp_path):
    copy_workflow(tmp_path)
    config = write_config(tmp_path, {"cluster": {"resources": {"trian": {"gpu": 1}}}})
    result = snakemake(["-n", "--configfile", str(config)], cwd=tmp_path, timeout=300)
    assert result.returncode != 0
    assert (
        "config error: cluster.resources: 'trian' is not allowed; did you mean 'train'?"
        in result.stdout + result.stderr
    )


@pytest.mark.slow
def test_tiny_pipeline_runs_through_slurm(tmp_path, running_cluster):
    """The tiny config through `snakemake --profile slurm` on the test cluster, to the table."""
    copy_workflow(tmp_path)
    copy_profile(
        tmp_path,
        **{
            # No accounting storage on the test cluster: poll the controller.
            "slurm-status-command": "squeue",
            "slurm-init-seconds-before-status-checks": 1,
            "slurm-keep-successful-logs": True,
            "latency-wait": 5,
            # A broken job fails the test at once instead of after two resubmissions.
            "retries": 0,
        },
    )
    # GPU rules ask for the node's one (generic-resource) GPU in gres mode; their scripts still run
    # on its CPUs (--device auto finds no CUDA).
    gpu_job = {**TEST_JOB, "gpu": 1}
    resources = {
        "default": TEST_JOB,
        **{rule: TEST_JOB for rule in CPU_RULES},
        **{rule: gpu_job for rule in RESOURCE_ENTRIES},
    }
    resources["train"] = {**gpu_job, "cpus": 2}
    write_slurm_config(
        tmp_path,
        {
            "cpu_partition": running_cluster.partition,
            "gpu_partition": running_cluster.gpu_partition,
            "gpu_request": "gres",
            "resources": resources,
        },
    )
    variant = f"results/models/{SLURM_VARIANT}/seed0/model.pt"
    result = snakemake(["all", variant, "--profile", "slurm"], cwd=tmp_path, timeout=600)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:] + running_cluster.log_tail(1500)
    record = torch.load(tmp_path / variant, weights_only=False)
    assert record["spec"]["name"] == SLURM_VARIANT and record["spec"]["model"]["num_unrolls"] == 1

    table = pd.read_csv(tmp_path / "results/tables/robustness.csv")
    assert set(table["model"]) == set(SLURM_MODELS)
    for figure in ("robustness_curves", "acceleration_shift", "image_grid"):
        assert (tmp_path / f"results/figures/{figure}.png").stat().st_size > 0
    # Every job went through sbatch: the plugin's SLURM log of each rule, and its SLURM job id.
    submitted = re.findall(r"has been submitted with SLURM jobid (\d+)", output)
    assert len(submitted) == 19, output[-3000:]
    slurm_logs = tmp_path / ".snakemake" / "slurm_logs"
    for rule in (
        "synthetic_dataset",
        "split_list",
        "masks",
        "zero_filled_method",
        "train",
        "attack",
        "noise",
        "evaluate",
        "robustness_table",
        "training_health",
        "claims",
        "html_tables",
        "figures",
    ):
        logs = list((slurm_logs / f"rule_{rule}").rglob("*.log"))
        assert logs, f"no SLURM log for rule {rule} under {slurm_logs}"
        assert all(f"rule {rule}:" in log.read_text() for log in logs), rule
    # Where each job ran, as the controller saw it: CPU rules in the CPU partition with no GPU, GPU
    # rules in the GPU partition with --gres=gpu:1.
    placed = []
    for job in slurm_cluster.submitted_jobs():
        rule = re.match(r"^rule_(.+?)(?:_wildcards_.*)?$", job["comment"]).group(1)
        placed.append((rule, job["partition"], job["gres"]))
    print("\nSLURM jobs (rule, partition, generic resources):", *sorted(placed), sep="\n  ")
    assert len(placed) == 19, placed
    for rule, partition, gres in placed:
        if rule in GPU_RULES:
            assert partition == running_cluster.gpu_partition and "gpu:1" in gres, (rule, partition, gres)
        else:
            assert partition == running_cluster.partition and "gpu" not in gres, (rule, partition, gres)
    # threads: 2 became --cpus-per-task=2 and reached torch through --threads.
    assert "torch threads 2" in (tmp_path / "results/logs/train/modl_seed0.log").read_text()
