"""The Snakemake workflow on the real-fastMRI data path (data.source: fastmri), offline.

The test writes tiny volumes in fastMRI's exact layout, packs them as the e-mailed archives are
packed (``{dataset}.tar.xz`` holding ``multicoil_val/file*.h5``, plus a sha256sum list) and serves
them from a loopback HTTP server, so the pipeline downloads, verifies, extracts, indexes, splits,
estimates sensitivity maps and then trains and evaluates as it would on the real data.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import http.server
import tarfile
import threading
from pathlib import Path

import h5py
import pandas as pd
import pytest
import yaml

from tests.fastmri_files import write_fastmri_volume
from tests.workflow_utils import TINY_CONFIG, copy_workflow, deep_update, snakemake, write_config

RECON_SIZE = [16, 16]
COILS = 3
# A signature in the query string, as on the real signed links; it must never reach a log.
SIGNATURE = "Signature=not-a-real-secret-42"

# dataset -> (folder inside the archive, {file name: volume settings}); k-space (S=2, C=3, 32 x W).
KNEE = dict(anatomy="knee", kspace_shape=(32, 24), padding=(2, 22))
BRAIN = dict(anatomy="brain", kspace_shape=(32, 16), acquisition="AXT2")
FLAIR_NARROW = dict(anatomy="brain", kspace_shape=(32, 12), acquisition="AXFLAIR")  # narrower than 16
DATASETS = {
    "knee_multicoil_train": ("multicoil_train", {"file1000001.h5": KNEE, "file1000002.h5": KNEE}),
    "knee_multicoil_val": (
        "multicoil_val",
        {"file1000011.h5": KNEE, "file1000012.h5": KNEE, "file1000013.h5": KNEE},
    ),
    "brain_multicoil_val": (
        "multicoil_val",
        {"file_brain_AXT2_200_6002001.h5": BRAIN, "file_brain_AXFLAIR_203_6002002.h5": FLAIR_NARROW},
    ),
}
SPLITS = {
    "train": {"knee": {"dataset": "knee_multicoil_train", "start": 0, "count": None}},
    "val": {"knee": {"dataset": "knee_multicoil_val", "start": 0, "count": 1}},
    "test": {
        "knee": {"dataset": "knee_multicoil_val", "start": 1, "count": 2},
        "brain": {"dataset": "brain_multicoil_val", "start": 0, "count": 2},
    },
}
MODELS = ["zero_filled", "modl", "unet"]
# The tiny config cut to three models and one attack, on fastMRI-format data of RECON_SIZE.
FASTMRI_OVERRIDES = {
    "data": {
        "source": "fastmri",
        "challenge": "multicoil",
        "train_anatomy": "knee",
        "shift_anatomy": "brain",
    },
    "fastmri": {
        "recon_size": RECON_SIZE,
        "splits": SPLITS,
        # ESPIRiT's defaults (24 calibration columns, kernel 6) do not fit 12..24-column k-space.
        "sens_maps": {"num_acs": 8, "kernel_size": 3},
    },
    "evaluation": {
        "models": MODELS,
        "generators": [],
        "test_slices": 4,
        "unrolls": [1, 3],
        "ttt": {"models": ["modl"], "steps": 2, "patience": 1},
        "figure": {"attack": "pgd_kspace_linf", "level": 0.02, "models": MODELS},
    },
    # Claims these three models can be held to (the default's name models this run leaves out).
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
        {
            "id": "shift_linear",
            "source": "test",
            "statement": "Shifted and clean scores correlate.",
            "kind": "correlation",
            "models": MODELS,
            "x": {"perturbation": "clean", "level": 0.0},
            "y": {"perturbation": "anatomy_shift", "level": 0.0},
            "metric": "PSNR",
            "direction": "greater",
        },
    ],
    # One CPU per job, so that tiny jobs share the two cores instead of queueing behind each other.
    "cluster": {
        "resources": {
            rule: {"cpus": 1}
            for rule in ("train", "attack", "evaluate", "ttt", "sens_maps", "noise", "robustness_table")
        }
    },
}
ATTACKS = {"pgd_kspace_linf": {"eps": [0.02]}}


def write_dataset_archives(work: Path) -> tuple[Path, dict[str, bytes]]:
    """Write every dataset of DATASETS as ``{dataset}.tar.xz`` and a sha256sum list of them.

    Returns the hash file and ``{archive name: archive bytes}``.
    """
    archives = {}
    for seed, (dataset, (folder, volumes)) in enumerate(DATASETS.items()):
        staging = work / "volumes" / dataset
        staging.mkdir(parents=True)
        archive = work / f"{dataset}.tar.xz"
        with tarfile.open(archive, "w:xz") as tar:
            for offset, (fname, settings) in enumerate(volumes.items()):
                path = write_fastmri_volume(
                    staging / fname,
                    challenge="multicoil",
                    num_slices=2,
                    recon_size=RECON_SIZE,
                    num_coils=COILS,
                    seed=100 * seed + offset,
                    **settings,
                )
                tar.add(path, arcname=f"{folder}/{fname}")
        archives[archive.name] = archive.read_bytes()
    hashes = work / "fastmri_sha256.txt"
    hashes.write_text(
        "".join(f"{hashlib.sha256(data).hexdigest()}  {name}\n" for name, data in archives.items())
    )
    return hashes, archives


class ArchiveHandler(http.server.BaseHTTPRequestHandler):
    """Serves ``server.files[name]`` at ``/name`` (query strings ignored, as a signed link's are)."""

    def do_GET(self) -> None:
        name = self.path.split("?", 1)[0].lstrip("/")
        body = self.server.files.get(name)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def archive_server():
    """``(base URL, files)``: a loopback HTTP server thread serving the dict ``files``."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), ArchiveHandler)
    httpd.files = {}
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", httpd.files
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def signed_urls(base: str, datasets) -> dict[str, str]:
    return {dataset: f"{base}/{dataset}.tar.xz?{SIGNATURE}" for dataset in datasets}


def write_fastmri_config(dest: Path, fastmri: dict) -> dict:
    """The copy's config/config.yaml rewritten to the tiny fastMRI run.

    Written in place rather than passed with --configfile, which merges mappings and so could not
    drop the default's attacks.
    """
    path = dest / "config" / "config.yaml"
    config = deep_update(yaml.safe_load(path.read_text()), TINY_CONFIG)
    config = deep_update(config, FASTMRI_OVERRIDES)
    config["fastmri"].update(fastmri)
    config["evaluation"]["attacks"] = copy.deepcopy(ATTACKS)
    path.write_text(yaml.safe_dump(config))
    return config


def failure(result) -> str:
    return f"stdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-5000:]}"


def job_counts(dry_run_stdout: str) -> dict[str, int]:
    """``{rule: jobs}`` from the job-stats table of ``snakemake -n --quiet rules``."""
    rows = (line.split() for line in dry_run_stdout.splitlines())
    return {row[0]: int(row[1]) for row in rows if len(row) == 2 and row[1].isdigit()}


def logs_of(dest: Path) -> str:
    """Every rule log, concatenated, for failure messages."""
    logs = sorted((dest / "results" / "logs").rglob("*.log"))
    return "\n".join(f"== {p.relative_to(dest)}\n{p.read_text()[-1500:]}" for p in logs)


@pytest.mark.slow
def test_fastmri_pipeline_downloads_and_runs_end_to_end(tmp_path, archive_server):
    """Download, verify and extract three archives over HTTP, index them, split, estimate maps,
    train, attack and evaluate (with the brain anatomy shift and TTT), ending in the table."""
    base, files = archive_server
    hashes, archives = write_dataset_archives(tmp_path / "served")
    files.update(archives)
    work = copy_workflow(tmp_path / "work")
    write_fastmri_config(
        work, {"urls": signed_urls(base, DATASETS), "sha256_file": str(hashes), "keep_archives": False}
    )

    result = snakemake(["--cores", "2"], cwd=work, timeout=900)
    assert result.returncode == 0, failure(result) + logs_of(work)

    for dataset, (_, volumes) in DATASETS.items():
        marker = work / "resources/fastmri" / dataset / ".complete"
        assert marker.read_text().split() == sorted(volumes)
        # keep_archives: false deletes each archive once it is extracted.
        assert not (work / "resources/fastmri/archives" / f"{dataset}.tar.xz").exists()
        index = pd.read_csv(work / "resources/fastmri/index" / f"{dataset}.csv")
        assert list(index["fname"]) == sorted(volumes)
        assert set(index["num_coils"]) == {COILS} and set(index["num_slices"]) == {2}
        assert index["has_target"].all()
        assert set(index["anatomy"]) == {dataset.split("_")[0]}
        fetch_log = (work / "results/logs/fastmri" / f"fetch_{dataset}.log").read_text()
        assert SIGNATURE.split("=")[1] not in fetch_log

    def split(name: str) -> list[str]:
        return [Path(line).name for line in (work / "resources/splits" / f"{name}.txt").read_text().split()]

    assert split("train_knee") == ["file1000001.h5", "file1000002.h5"]
    assert split("val_knee") == ["file1000011.h5"]
    assert split("test_knee") == ["file1000012.h5", "file1000013.h5"]
    assert split("test_brain") == sorted(DATASETS["brain_multicoil_val"][1])
    for name in ("train_knee", "val_knee", "test_knee", "test_brain"):
        maps = sorted((work / "resources/fastmri/sens_maps" / name).glob("*.h5"))
        assert [p.name for p in maps] == split(name)
        with h5py.File(maps[0], "r") as hf:
            assert hf["sens_maps"].shape[-3:] == (COILS, *RECON_SIZE)

    table = pd.read_csv(work / "results/tables/robustness.csv")
    assert not table.isna().any().any()
    assert set(table["model"]) == set(MODELS)
    for model in MODELS:
        perturbations = set(table[table["model"] == model]["perturbation"])
        assert {
            "clean",
            "anatomy_shift",
            "small_feature",
            "pgd_kspace_linf",
            "noise_kspace_linf",
        } <= perturbations
        assert ("ttt_anatomy_shift" in perturbations) == (model == "modl")
    clean_psnr = table[(table["perturbation"] == "clean") & (table["metric"] == "PSNR")]
    assert len(clean_psnr) == len(MODELS) and (clean_psnr["mean"] > 0).all()
    assert set(clean_psnr["n_slices"]) == {4}
    assert (work / "results/figures/robustness_curves.png").stat().st_size > 0


def test_data_under_fastmri_root_is_indexed_not_fetched(tmp_path):
    """fastmri.root holding {dataset}/*.h5: the dry run indexes every dataset and downloads nothing."""
    root = tmp_path / "fastmri"
    for dataset, (_, volumes) in DATASETS.items():
        fname, settings = next(iter(volumes.items()))
        write_fastmri_volume(
            root / dataset / fname,
            challenge="multicoil",
            num_slices=2,
            recon_size=RECON_SIZE,
            num_coils=COILS,
            **settings,
        )
    work = copy_workflow(tmp_path / "work")
    overlay = write_config(
        work, {"data": {"source": "fastmri"}, "fastmri": {"root": str(root), "splits": SPLITS}}
    )
    result = snakemake(["-n", "--quiet", "rules", "--configfile", str(overlay)], cwd=work, timeout=300)
    assert result.returncode == 0, failure(result)
    jobs = job_counts(result.stdout)
    assert jobs.get("index_fastmri") == len(DATASETS), result.stdout
    assert jobs.get("sens_maps") == 4 and jobs.get("split_list") == 4, result.stdout
    assert "fetch_fastmri" not in jobs and "synthetic_dataset" not in jobs, result.stdout


def test_dataset_without_url_is_named(tmp_path):
    """No fastmri.root and no URL for a dataset a split needs: the dry run stops, naming both."""
    hashes = tmp_path / "fastmri_sha256.txt"
    hashes.write_text(f"{'0' * 64}  knee_multicoil_train.tar.xz\n")
    work = copy_workflow(tmp_path / "work")
    urls = signed_urls("http://127.0.0.1:9", ["knee_multicoil_train", "knee_multicoil_val"])
    overlay = write_config(
        work,
        {
            "data": {"source": "fastmri"},
            "fastmri": {"urls": urls, "sha256_file": str(hashes), "splits": SPLITS},
        },
    )
    result = snakemake(["-n", "--configfile", str(overlay)], cwd=work, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "brain_multicoil_val" in output and "fastmri.urls" in output, output


def test_corrupt_archive_stops_at_fetch_and_leaves_no_marker(tmp_path, archive_server):
    """An archive whose SHA256 is not the listed one: fetch_fastmri fails naming the archive, the
    corrupt download is gone and no marker claims the dataset is there."""
    base, files = archive_server
    dataset = "knee_multicoil_val"
    good = tmp_path / "good.tar.xz"
    with tarfile.open(good, "w:xz") as tar:
        path = write_fastmri_volume(
            tmp_path / "file1000011.h5",
            challenge="multicoil",
            num_slices=2,
            recon_size=RECON_SIZE,
            num_coils=COILS,
            **KNEE,
        )
        tar.add(path, arcname=f"multicoil_val/{path.name}")
    corrupt = bytearray(good.read_bytes())
    corrupt[len(corrupt) // 2] ^= 0xFF
    files[f"{dataset}.tar.xz"] = bytes(corrupt)
    hashes = tmp_path / "fastmri_sha256.txt"
    hashes.write_text(f"{hashlib.sha256(good.read_bytes()).hexdigest()}  {dataset}.tar.xz\n")

    work = copy_workflow(tmp_path / "work")
    overlay = write_config(
        work,
        {
            "data": {"source": "fastmri"},
            "fastmri": {"urls": signed_urls(base, [dataset]), "sha256_file": str(hashes), "splits": SPLITS},
        },
    )
    target = f"resources/fastmri/index/{dataset}.csv"
    result = snakemake([target, "--cores", "1", "--configfile", str(overlay)], cwd=work, timeout=300)
    assert result.returncode != 0, failure(result)
    assert "fetch_fastmri" in result.stdout + result.stderr
    log = (work / "results/logs/fastmri" / f"fetch_{dataset}.log").read_text()
    assert f"{dataset}.tar.xz" in log and "SHA256 mismatch" in log, log
    assert SIGNATURE.split("=")[1] not in log
    assert not (work / "resources/fastmri" / dataset / ".complete").exists()
    assert not list((work / "resources/fastmri").rglob("*.h5"))
    assert not (work / target).exists()
