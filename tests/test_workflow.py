"""The Snakemake workflow: static checks, config validation, and a tiny end-to-end run."""

import base64
import re
import subprocess

import h5py
import pandas as pd
import pytest
import torch

from smug.attacks import load_attack
from smug.study import FIGURES

from tests.workflow_utils import BIN, REPO, TINY_CONFIG, copy_workflow, deep_update, snakemake, write_config

TINY_CONFIG_MODELS = [
    "zero_filled",
    "cs_l1_wavelet",
    "cs_tv",
    "untrained",
    "unet",
    "unet_adv",
    "unet_adv_kspace",
    "modl",
    "modl_pgd",
    "smug",
    "weighted_smug",
    "rs_e2e",
]


def test_snakemake_lint_is_clean():
    result = snakemake(["--lint"], cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Lints for" not in result.stdout + result.stderr, result.stdout + result.stderr


def test_snakefmt_check_passes():
    result = subprocess.run(
        [str(BIN / "snakefmt"), "--check", "workflow"], cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_default_dry_run_lists_the_whole_pipeline(tmp_path):
    copy_workflow(tmp_path)
    result = snakemake(["-n", "--quiet", "rules"], cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr
    for rule in (
        "synthetic_dataset",
        "masks",
        "train",
        "tune_classical",
        "attack",
        "noise",
        "evaluate",
        "robustness_table",
        "figures",
    ):
        assert rule in result.stdout


def test_unknown_or_mistyped_config_key_is_one_short_message(tmp_path):
    """One message naming the key's path, the closest valid key and how to set nested keys, not a
    dump of the schema."""
    copy_workflow(tmp_path)
    cases = {
        "synthetic_key": (
            {"synthetic": {"volumez": 3}},
            "config error: unknown key 'synthetic.volumez' in synthetic (did you mean synthetic.volumes?)",
        ),
        "top_level_key": (
            {"traning": {"lr": 1}},
            "config error: unknown key 'traning' at the top level (did you mean training?)",
        ),
        "type": (
            {"synthetic": {"coils": "four"}},
            "config error: synthetic.coils: 'four' is not of type 'integer'",
        ),
        "enum": (
            {"device": "cdua"},
            "config error: device: 'cdua' is not allowed; did you mean 'cuda'? valid: auto, cpu, cuda",
        ),
    }
    for name, (overrides, message) in cases.items():
        result = snakemake(
            ["-n", "--configfile", str(write_config(tmp_path, overrides, f"{name}.yaml"))], tmp_path
        )
        output = result.stdout + result.stderr
        assert result.returncode != 0 and message in output, output[-2000:]
        assert len(output.strip().splitlines()) <= 6, output
    typo = snakemake(["-n", "--configfile", str(tmp_path / "top_level_key.yaml")], tmp_path)
    assert "Nested keys are set in a YAML file passed with --configfile" in typo.stdout + typo.stderr


# Rules whose jobs follow a seed (a {seed} wildcard), and those made once for every seed.
SEEDED_RULES = {"train", "untrained_method", "attack", "protocol_attack", "noise", "evaluate", "ttt"}
ONCE_RULES = {"synthetic_dataset", "masks", "split_list", "tune_classical", "zero_filled_method"}


def _jobs_by_rule(jobs):
    counts = {}
    for rule, _ in jobs:
        counts[rule] = counts.get(rule, 0) + 1
    return counts


def test_adding_a_seed_schedules_one_more_copy_of_the_seeded_jobs_only(tmp_path):
    """From nothing, two seeds schedule exactly twice the seeded jobs of one seed, each seed once,
    and the data, masks, CS tuning and zero-filled once."""
    copy_workflow(tmp_path)
    runs = {}
    for seeds in ([0], [0, 1]):
        config = write_config(tmp_path, deep_update(TINY_CONFIG, {"seeds": seeds}), f"seeds{len(seeds)}.yaml")
        result = snakemake(["-n", "--configfile", str(config)], tmp_path)
        assert result.returncode == 0, result.stderr[-3000:]
        runs[len(seeds)] = scheduled_jobs(result.stdout)
    one, two = _jobs_by_rule(runs[1]), _jobs_by_rule(runs[2])
    assert SEEDED_RULES <= set(one) and ONCE_RULES <= set(one)
    for rule in SEEDED_RULES:
        assert two[rule] == 2 * one[rule], rule
        seeds = [w["seed"] for r, w in runs[2] if r == rule]
        assert seeds.count("0") == seeds.count("1") == one[rule], rule
    for rule in ONCE_RULES:
        assert two[rule] == one[rule], rule
    assert set(two) == set(one)


def test_seeds_must_be_distinct_non_negative_integers(tmp_path):
    copy_workflow(tmp_path)
    cases = {
        "empty": ([], "config error: seeds: [] should be non-empty"),
        "repeated": ([0, 0], "config error: seeds: [0, 0] has non-unique elements"),
        "negative": ([0, -1], "config error: seeds.1: -1 is less than the minimum of 0"),
        "text": ([0, "one"], "config error: seeds.1: 'one' is not of type 'integer'"),
    }
    for name, (seeds, message) in cases.items():
        config = write_config(tmp_path, {"seeds": seeds}, f"{name}.yaml")
        result = snakemake(["-n", "--configfile", str(config)], tmp_path)
        output = result.stdout + result.stderr
        assert result.returncode != 0 and message in output, (name, output[-2000:])
        assert len(output.strip().splitlines()) <= 6, output


@pytest.mark.slow
def test_tiny_pipeline_runs_end_to_end(tmp_path):
    """The whole DAG from nothing on a tiny config with two seeds: data, masks, every model of each
    seed, attacks, evaluation, tables over and by seed, figures and the Snakemake report; then a
    third seed adds only its own jobs, and dropping one reuses what exists."""
    copy_workflow(tmp_path)
    tiny = deep_update(TINY_CONFIG, {"seeds": [0, 1]})
    config = write_config(tmp_path, tiny)
    result = snakemake(["--cores", "2", "--configfile", str(config)], tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    for model in ("denoiser", "modl", "smug", "weighted_smug", "rs_e2e", "modl_pgd", "unet", "unet_adv"):
        for seed in (0, 1):
            record = torch.load(tmp_path / f"results/models/{model}/seed{seed}/model.pt", weights_only=True)
            assert record["spec"]["name"] == model and record["spec"]["seed"] == seed
            assert record["provenance"]["packages"]["torch"] and record["train_seconds"] > 0
            assert (tmp_path / f"results/logs/train/{model}_seed{seed}.log").exists()
            assert (tmp_path / f"results/benchmarks/rules/train_{model}_seed{seed}.tsv").exists()
        # Another seed, another training: its weights differ.
        first, second = (
            torch.load(tmp_path / f"results/models/{model}/seed{s}/model.pt", weights_only=True)["state_dict"]
            for s in (0, 1)
        )
        assert any(not torch.equal(first[k], second[k]) for k in first), model
    untrained = [torch.load(tmp_path / f"results/models/untrained/seed{s}/model.pt") for s in (0, 1)]
    assert [record["seed"] for record in untrained] == [0, 1]
    assert (tmp_path / "results/models/cs_tv/model.pt").exists()  # made once for every seed
    assert sorted(p.name for p in (tmp_path / "resources/masks").iterdir()) == ["2x.npz", "4x.npz"]

    # The training-health table: every evaluated model and the denoiser, with a verdict and, for an
    # unhealthy model (expected at this size), the checks it failed, each with its seed.
    health = pd.read_csv(tmp_path / "results/tables/training_health.csv")
    from smug.reporting import COLUMNS as HEALTH_COLUMNS, SEED_COLUMNS

    assert list(health.columns) == [*HEALTH_COLUMNS[:-2], *SEED_COLUMNS, *HEALTH_COLUMNS[-2:]]
    assert set(health["model"]) == set(TINY_CONFIG_MODELS) | {"denoiser"}
    assert (health["n_seeds"] == 2).all()
    by_seed = pd.read_csv(tmp_path / "results/tables/training_health_by_seed.csv")
    assert sorted(by_seed["seed"].unique()) == [0, 1] and len(by_seed) == 2 * len(health)
    assert health.set_index("model").loc["zero_filled", "healthy"]
    unhealthy = health[~health["healthy"]]
    assert unhealthy["failed_checks"].str.len().gt(0).all()
    for model in unhealthy["model"]:
        assert f"WARNING: model {model} is not healthy" in result.stdout + result.stderr
    trained = health[health["kind"].isin(["modl", "smug"])]
    assert (trained["lam"] > 0).all() and (trained["optimizer_steps"] > 0).all()

    table = pd.read_csv(tmp_path / "results/tables/robustness.csv")
    assert not table.isna().any().any()
    assert (table["n_seeds"] == 2).all()
    per_seed = pd.read_csv(tmp_path / "results/tables/robustness_by_seed.csv")
    assert len(per_seed) == 2 * len(table) and sorted(per_seed["seed"].unique()) == [0, 1]
    scores = pd.read_csv(tmp_path / "results/tables/scores.csv")
    assert sorted(scores["seed"].unique()) == [0, 1]
    assert set(table.loc[table["perturbation"] == "pgd_kspace_linf", "protocol"]) == {"white-box (EOT)"}
    assert set(table["model"]) == set(TINY_CONFIG_MODELS)
    expected = {
        "clean",
        "pgd_kspace_linf",
        "pgd_image_linf",
        "noise_kspace_linf",
        "noise_image_linf",
        "acceleration",
        "unrolls",
        "generator_unet_adv",
        "generator_unet_adv_kspace",
        "anatomy_shift",
        "small_feature",
        "ttt_anatomy_shift",
    }
    assert expected <= set(table["perturbation"])
    # The robustness study's measurements: every model under anatomy shift and small features, the
    # listed networks after test-time training, and the gap it closes.
    assert set(table[table["perturbation"] == "anatomy_shift"]["model"]) == set(TINY_CONFIG_MODELS)
    features = table[table["perturbation"] == "small_feature"]
    assert {"feature_error", "feature_detected"} <= set(features["metric"])
    assert set(table[table["perturbation"] == "ttt_anatomy_shift"]["model"]) == {"modl", "smug"}
    shift = pd.read_csv(tmp_path / "results/tables/distribution_shift.csv")
    assert set(shift["model"]) == set(TINY_CONFIG_MODELS)
    assert shift[shift["model"] == "modl"]["ttt"].notna().all()
    assert set(table[table["perturbation"] == "unrolls"]["level"]) == {1.0, 3.0}
    for figure in FIGURES:
        assert (tmp_path / f"results/figures/{figure}.png").stat().st_size > 0
        assert (tmp_path / f"results/figures/{figure}.pdf").stat().st_size > 0
    attack = tmp_path / "results/attacks/seed0/smug/pgd_kspace_linf.h5"
    levels = load_attack(attack)
    assert [attrs["eps"] for _, attrs in levels] == [0.01, 0.02]

    again = snakemake(["-n", "--configfile", str(config)], tmp_path)
    assert "Nothing to be done" in again.stdout + again.stderr

    # A model's spec holds only the settings it reads: a new smoothing sigma retrains SMUG and
    # Weighted SMUG of every seed, and re-runs what depends on them, but no other model.
    sigma = write_config(tmp_path, deep_update(tiny, {"smoothing": {"sigma": 0.03}}), "sigma.yaml")
    changed = snakemake(["-n", "--configfile", str(sigma)], tmp_path)
    jobs = scheduled_jobs(changed.stdout)
    assert {(w["model"], w["seed"]) for rule, w in jobs if rule == "train"} == {
        (m, s) for m in ("smug", "weighted_smug") for s in ("0", "1")
    }
    assert {w["model"] for rule, w in jobs if rule in ("evaluate", "attack")} == {"smug", "weighted_smug"}

    # A third seed schedules exactly its own copy of the seeded jobs, besides the tables that
    # gather every seed; dropping a seed retrains and re-evaluates nothing.
    third = write_config(tmp_path, deep_update(tiny, {"seeds": [0, 1, 2]}), "third.yaml")
    jobs = scheduled_jobs(snakemake(["-n", "--configfile", str(third)], tmp_path).stdout)
    seeded = [(rule, w) for rule, w in jobs if "seed" in w]
    assert {w["seed"] for _, w in seeded} == {"2"}
    fresh = copy_workflow(tmp_path / "fresh")
    one_seed = write_config(fresh, deep_update(tiny, {"seeds": [2]}), "one.yaml")
    from_nothing = scheduled_jobs(snakemake(["-n", "--configfile", str(one_seed)], fresh).stdout)
    assert _jobs_by_rule(seeded) == _jobs_by_rule([(r, w) for r, w in from_nothing if "seed" in w])
    gathering = {"robustness_table", "training_health", "claims", "figures", "html_tables", "all"}
    assert {rule for rule, w in jobs if "seed" not in w} <= gathering
    fewer = write_config(tmp_path, deep_update(tiny, {"seeds": [0]}), "fewer.yaml")
    jobs = scheduled_jobs(snakemake(["-n", "--configfile", str(fewer)], tmp_path).stdout)
    assert {rule for rule, _ in jobs} <= gathering

    # Reconstructing your own files: the test volumes, as a user's folder, with two saved methods.
    folder = tmp_path / "resources/synthetic/multicoil_test"
    own = write_config(
        tmp_path,
        deep_update(tiny, {"reconstruct": {"folder": str(folder), "models": ["zero_filled", "modl"]}}),
        "own.yaml",
    )
    rebuilt = snakemake(["--cores", "2", "reconstructions", "--configfile", str(own)], tmp_path)
    assert rebuilt.returncode == 0, rebuilt.stderr[-3000:]
    for model in ("zero_filled", "modl"):
        for volume in sorted(folder.glob("*.h5")):
            with h5py.File(tmp_path / f"results/reconstructions/{model}/{volume.name}") as f:
                assert f["reconstruction"].shape == (2, 320, 320)

    report = snakemake(["--configfile", str(config), "--report", "results/report.html"], tmp_path)
    assert report.returncode == 0, report.stderr[-3000:]
    html = (tmp_path / "results/report.html").read_text()
    assert "robustness_curves.png" in html
    # Captions print settings as a person writes them, not as Python's reprs.
    assert "from a random start" in html and "2x, 4x" in html and "1, 3 unrolls" in html
    # The three tables are embedded as pages the report shows inline: every model's row, and in the
    # health table every unhealthy model's row marked.
    pages = embedded_html_pages(html)
    assert {"robustness.html", "distribution_shift.html", "training_health.html"} <= set(pages)
    for model in TINY_CONFIG_MODELS:
        for name in ("robustness.html", "distribution_shift.html", "training_health.html"):
            assert f'<span class="name">{model}</span>' in pages[name], (model, name)
    row = r'<tr class="unhealthy"><th scope="row">[^<]*<span class="flag">[^<]*</span><span class="name">([^<]+)</span>'
    marked = set(re.findall(row, pages["training_health.html"]))
    assert marked == set(unhealthy["model"])
    assert (tmp_path / "results/tables/training_health.html").read_text() == pages["training_health.html"]


def embedded_html_pages(report: str) -> dict[str, str]:
    """File name -> content of every HTML result a self-contained Snakemake report embeds (as a
    base64 data URI, shown in a frame)."""
    pattern = r"data:text/html;charset=[^;]+;filename=([^;]+);base64,([A-Za-z0-9+/=]+)"
    return {name: base64.b64decode(data).decode("utf-8") for name, data in re.findall(pattern, report)}


def scheduled_jobs(dry_run_output: str) -> list[tuple[str, dict[str, str]]]:
    """``(rule, wildcards)`` of every job a ``snakemake -n`` run lists."""
    jobs, rule = [], None
    for line in dry_run_output.splitlines():
        line = line.strip()
        if line.startswith("rule ") and line.endswith(":"):
            rule = line[5:-1]
            jobs.append((rule, {}))
        elif line.startswith("wildcards:") and rule is not None:
            jobs[-1][1].update(item.split("=", 1) for item in line[len("wildcards:") :].strip().split(", "))
    return jobs
