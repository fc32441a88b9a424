"""The scripts' command line (smug.utils.cli): a rule's named files and params become the options of the
same names, exactly as a person would type them; the pipeline's defaults come from config.yaml."""

import argparse
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
import yaml

from smug.utils import cli
from tests.workflow_utils import REPO


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="probe.py")
    p.add_argument("--test", nargs="+")
    p.add_argument("--mask")
    p.add_argument("--out")
    p.add_argument("--eps", type=float, nargs="+")
    p.add_argument("--volumes", nargs="+")
    p.add_argument("--settings", type=cli.load_spec)
    p.add_argument("--flag", action="store_true")
    p.add_argument("--random-start", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--test-slices", type=int)
    p.add_argument("--threads", type=int)
    return p


def job(input=None, output=None, params=None, threads=1, log=()):
    return SimpleNamespace(
        rule="probe",
        input=input or {},
        output=output or {},
        params=params or {},
        threads=threads,
        log=list(log),
    )


def test_rule_values_become_the_words_a_person_types(tmp_path):
    volumes = tmp_path / "test_knee.txt"
    volumes.write_text("a.h5\nb.h5\n")
    words = cli.rule_arguments(
        parser(),
        job(
            input={"test": str(volumes), "mask": "4x.npz", "sens": ["maps/a.h5"]},
            output={"out": "o.h5", "pdf": "o.pdf"},
            params={
                "eps": [0.01, 0.02],
                "volumes": {"train": 6, "val": 2},
                "settings": {"steps": 3, "lr": 1e-4},
                "flag": True,
                "random_start": False,
                "test_slices": None,
            },
            threads=3,
        ),
    )
    args = cli.parse_args(parser(), words)
    # A .txt input of a many-valued option is a volume list; names the script lacks (sens, pdf) are
    # the rule's own dependencies and products, not options.
    assert args.test == ["a.h5", "b.h5"] and args.mask == "4x.npz" and args.out == "o.h5"
    assert args.eps == [0.01, 0.02] and args.volumes == ["train=6", "val=2"]
    assert args.settings == {"lr": 1e-4, "steps": 3}
    assert args.flag is True and args.random_start is False and args.test_slices is None and args.threads == 3
    assert "--test-slices" not in words


def test_a_param_that_is_no_option_is_an_error_naming_it():
    with pytest.raises(ValueError, match=r"rule probe: params eps_grid are not options of probe.py"):
        cli.rule_arguments(parser(), job(params={"eps_grid": [0.1]}))


def test_a_list_for_a_single_valued_option_is_an_error():
    with pytest.raises(ValueError, match="--mask takes one value"):
        cli.rule_arguments(parser(), job(params={"mask": ["a", "b"]}))


def test_an_empty_volume_list_is_a_usage_error_naming_it(tmp_path, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    with pytest.raises(SystemExit):
        cli.parse_args(parser(), ["--test", f"@{empty}"])
    assert f"list file {empty}" in capsys.readouterr().err


def test_script_defaults_are_the_config_files_values():
    """An option of a pipeline setting defaults to config/config.yaml's value and says so in --help."""
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts/attack.py"), "--help"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "COLUMNS": "300"},
    )
    assert "evaluation.pgd.steps of config/config.yaml" in result.stdout
    p = argparse.ArgumentParser()
    cli.add_config_option(p, "--steps", "evaluation.pgd.steps", type=int)
    cli.add_config_option(p, "--volumes", "synthetic.volumes", nargs="+")
    args = p.parse_args([])
    assert args.steps == config["evaluation"]["pgd"]["steps"]
    assert args.volumes == [f"{k}={v}" for k, v in config["synthetic"]["volumes"].items()]
