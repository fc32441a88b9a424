"""Config strings never reach the shell unquoted: every value a rule's command interpolates is one
shell word (`:q`), paths and names are refused by the schema when they hold shell metacharacters,
and names that refer to other config entries are checked when the DAG is built."""

from __future__ import annotations

import shlex

import pytest
import yaml

from tests.workflow_utils import TINY_CONFIG, copy_workflow, deep_update, snakemake, write_config

# Characters that an unquoted shell command would split on or interpret, all allowed by the schema.
SPACED_ROOT = "my data (v1)/syn thetic"
# An injection attempt: the schema refuses it, and quoting would keep it literal anyway.
INJECTED = "r;$(touch PWNED)"


def shell_commands(output: str) -> list[list[str]]:
    """Every command a `-p` dry run prints, split into words as the shell would."""
    prefix = "Shell command: "
    return [shlex.split(line[len(prefix) :]) for line in output.splitlines() if line.startswith(prefix)]


def commands_of(output: str, script: str) -> list[list[str]]:
    return [cmd for cmd in shell_commands(output) if len(cmd) > 1 and cmd[1] == f"scripts/{script}"]


def values_after(cmd: list[str], flag: str) -> list[str]:
    """The words after ``flag`` up to the next ``--option``."""
    start = cmd.index(flag) + 1
    stop = next((i for i in range(start, len(cmd)) if cmd[i].startswith("--")), len(cmd))
    return cmd[start:stop]


def dry_run(tmp_path, overrides: dict, *targets: str):
    config = write_config(tmp_path, deep_update(TINY_CONFIG, overrides))
    result = snakemake(["-n", "-p", "--forceall", *targets, "--configfile", str(config)], cwd=tmp_path, timeout=300)
    return result, result.stdout + result.stderr


def test_path_with_spaces_reaches_every_script_as_one_argument(tmp_path):
    copy_workflow(tmp_path)
    result, output = dry_run(tmp_path, {"data": {"root": SPACED_ROOT}}, "synthetic_dataset", "figures")
    assert result.returncode == 0, output[-3000:]
    [synthetic] = commands_of(output, "make_synthetic.py")
    assert values_after(synthetic, "--root") == [SPACED_ROOT]
    splits = commands_of(output, "make_split.py")
    assert splits
    for cmd in splits:
        volumes = values_after(cmd, "--volumes")
        assert volumes and all(v.startswith(f"{SPACED_ROOT}/multicoil_") for v in volumes), cmd
    # The multicoil consumers name the synthetic sensitivity maps' folder as one word too.
    trains = commands_of(output, "train.py")
    assert trains
    for cmd in trains:
        assert values_after(cmd, "--sens-dir") == [f"{SPACED_ROOT}/sens_maps"], cmd
    [figures] = commands_of(output, "make_figures.py")
    assert values_after(figures, "--models") == ["zero_filled", "modl", "smug"]
    assert values_after(figures, "--grid-attack") == ["pgd_kspace_linf"]


def test_quoting_keeps_metacharacters_literal_even_without_the_schema(tmp_path):
    """With the schema's path rule removed, a command substitution in data.root stays a literal part
    of one argument in every printed command."""
    copy_workflow(tmp_path)
    schema_path = tmp_path / "workflow/schemas/config.schema.yaml"
    schema = yaml.safe_load(schema_path.read_text())
    schema["$defs"]["safe_path"] = {}
    schema_path.write_text(yaml.safe_dump(schema))
    root = "a b;$(touch PWNED)`touch PWNED2`"
    result, output = dry_run(tmp_path, {"data": {"root": root}}, "synthetic_dataset")
    assert result.returncode == 0, output[-3000:]
    [synthetic] = commands_of(output, "make_synthetic.py")
    assert values_after(synthetic, "--root") == [root]
    assert not list(tmp_path.rglob("PWNED*"))


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("data", "root", INJECTED),
        ("data", "root", "r --help >/dev/null;touch PWNED;x"),
        ("fastmri", "archive_dir", "a b;touch PWNED"),
        ("fastmri", "root", "data$(touch PWNED)"),
        ("data", "root", "-r"),
        ("data", "root", "bad\nroot"),
    ],
)
def test_paths_with_shell_metacharacters_are_refused_naming_the_key(tmp_path, section, key, value):
    copy_workflow(tmp_path)
    result, output = dry_run(tmp_path, {section: {key: value}}, "synthetic_dataset", "figures")
    assert result.returncode != 0, output[-3000:]
    assert f"config error: {section}.{key}: {value!r} is not allowed. A file or folder path" in output, output[-3000:]
    assert not list(tmp_path.rglob("PWNED*"))


@pytest.mark.parametrize(
    ("overrides", "instance"),
    [
        ({"evaluation": {"figure": {"attack": "x --help >/dev/null; touch PWNED; echo"}}}, "evaluation.figure.attack"),
        ({"evaluation": {"figure": {"models": ["zero_filled", "smug;touch PWNED"]}}}, "evaluation.figure.models.1"),
        ({"untrained": {"attack_source": "modl $(touch PWNED)"}}, "untrained.attack_source"),
        ({"cluster": {"gpu_partition": "gpu;touch PWNED"}}, "cluster.gpu_partition"),
    ],
)
def test_names_with_shell_metacharacters_are_refused_naming_the_key(tmp_path, overrides, instance):
    copy_workflow(tmp_path)
    result, output = dry_run(tmp_path, overrides, "figures")
    assert result.returncode != 0, output[-3000:]
    assert f"config error: {instance}: " in output and "is not allowed" in output, output[-3000:]
    assert not list(tmp_path.rglob("PWNED*"))


@pytest.mark.parametrize(
    ("overrides", "key", "bad", "target"),
    [
        (
            {"evaluation": {"figure": {"models": ["zero_filled", "smugg"]}}},
            "evaluation.figure.models",
            "smugg",
            "evaluation.models",
        ),
        # A valid model that this run does not evaluate would leave its figure panel stale too.
        (
            {
                "evaluation": {
                    "models": ["zero_filled", "modl"],
                    "ttt": {"models": ["modl"]},
                    "figure": {"models": ["zero_filled", "smug"]},
                }
            },
            "evaluation.figure.models",
            "smug",
            "evaluation.models",
        ),
        (
            {"evaluation": {"figure": {"attack": "pgd_kspace_l2"}}},
            "evaluation.figure.attack",
            "pgd_kspace_l2",
            "evaluation.attacks",
        ),
        (
            {"untrained": {"attacks": ["pgd_image_linf_conference", "pgd_kspace_l2"]}},
            "untrained.attacks",
            "pgd_kspace_l2",
            "evaluation.attacks",
        ),
    ],
)
def test_reference_to_a_missing_entry_is_one_short_error(tmp_path, overrides, key, bad, target):
    copy_workflow(tmp_path)
    config = write_config(tmp_path, deep_update(TINY_CONFIG, overrides))
    result = snakemake(["-n", "--configfile", str(config)], cwd=tmp_path, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    message = f"config error: {key}: {bad!r} is not in {target} (valid: "
    [line] = [line for line in output.splitlines() if message in line]
    error = output[output.index("Error in file") :] if "Error in file" in output else output
    assert len(error.strip().splitlines()) < 15, error


def test_cheap_rule_runs_with_a_spaced_root_and_writes_there(tmp_path):
    """A real run of synthetic_dataset with a root holding a space and parentheses (which the shell
    would otherwise split on or choke on): the volumes land in that folder, nothing else appears."""
    copy_workflow(tmp_path)
    overrides = {
        "synthetic": {"volumes": {"train": 1, "val": 1, "test": 1}, "slices_per_volume": 1, "anatomies": ["knee"]},
        "data": {"root": SPACED_ROOT, "shift_anatomy": None},
    }
    config = write_config(tmp_path, deep_update(TINY_CONFIG, overrides))
    before = {p.name for p in tmp_path.iterdir()}
    result = snakemake(["--cores", "1", "synthetic_dataset", "--configfile", str(config)], cwd=tmp_path, timeout=600)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    root = tmp_path / SPACED_ROOT
    for split in ("train", "val", "test"):
        assert len(list((root / f"multicoil_{split}").glob("*.h5"))) == 1, split
    assert len(list((root / "sens_maps").glob("*.h5"))) == 3
    # Only the spaced root's top folder, the logs/benchmarks and Snakemake's own state are new.
    assert {p.name for p in tmp_path.iterdir()} - before <= {"my data (v1)", "results", ".snakemake"}
    assert not (tmp_path / "my").exists() and not (tmp_path / "data").exists()
