"""Config strings never reach a shell: every rule runs its script with `script:`, paths and names
are refused by the schema when they hold shell metacharacters (a second line of defence), and names
that refer to other config entries are checked when the DAG is built."""

from __future__ import annotations

import re

import pytest
import yaml

from tests.workflow_utils import (
    REPO,
    TINY_CONFIG,
    claims_without_shift,
    copy_workflow,
    deep_update,
    snakemake,
    write_config,
)

# Characters that an unquoted shell command would split on or interpret, all allowed by the schema.
SPACED_ROOT = "my data (v1)/syn thetic"
# An injection attempt: the schema refuses it, and quoting would keep it literal anyway.
INJECTED = "r;$(touch PWNED)"


def dry_run(tmp_path, overrides: dict, *targets: str):
    config = write_config(tmp_path, deep_update(TINY_CONFIG, overrides))
    result = snakemake(["-n", "--forceall", *targets, "--configfile", str(config)], cwd=tmp_path, timeout=300)
    return result, result.stdout + result.stderr


def test_no_rule_runs_a_shell_command():
    """Every rule runs its script with `script:` (values reach it as Python objects, smug.utils.cli), so
    no config value is ever parsed by a shell."""
    for path in sorted((REPO / "workflow").rglob("*.smk")) + [REPO / "workflow/Snakefile"]:
        text = path.read_text()
        assert not re.search(r"^\s+(shell|run):", text, re.MULTILINE), path
    scripts = re.findall(
        r'script:\n\s+"\.\./\.\./(scripts/\w+\.py)"',
        "".join(p.read_text() for p in (REPO / "workflow/rules").glob("*.smk")),
    )
    assert len(scripts) >= 15 and all((REPO / s).is_file() for s in scripts)


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
    assert (
        f"config error: {section}.{key}: {value!r} is not allowed. A file or folder path" in output
    ), output[-3000:]
    assert not list(tmp_path.rglob("PWNED*"))


@pytest.mark.parametrize(
    ("overrides", "instance"),
    [
        (
            {"evaluation": {"figure": {"attack": "x --help >/dev/null; touch PWNED; echo"}}},
            "evaluation.figure.attack",
        ),
        (
            {"evaluation": {"figure": {"models": ["zero_filled", "smug;touch PWNED"]}}},
            "evaluation.figure.models.1",
        ),
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


@pytest.mark.parametrize("root", [SPACED_ROOT, "a b;$(touch PWNED)`touch PWNED2`"])
def test_cheap_rule_runs_with_a_spaced_root_and_writes_there(tmp_path, root):
    """A real run of synthetic_dataset with a root holding a space and parentheses, and (with the
    schema's path rule removed) a command substitution: the volumes land in exactly that folder,
    nothing else appears and nothing is executed."""
    copy_workflow(tmp_path)
    if "$" in root:
        schema_path = tmp_path / "workflow/schemas/config.schema.yaml"
        schema = yaml.safe_load(schema_path.read_text())
        schema["$defs"]["safe_path"] = {}
        schema_path.write_text(yaml.safe_dump(schema))
    overrides = {
        "synthetic": {
            "volumes": {"train": 1, "val": 1, "test": 1},
            "slices_per_volume": 1,
            "anatomies": ["knee"],
        },
        "data": {"root": root, "shift_anatomy": None},
        "claims": claims_without_shift(TINY_CONFIG["claims"]),
    }
    config = write_config(tmp_path, deep_update(TINY_CONFIG, overrides))
    before = {p.name for p in tmp_path.iterdir()}
    result = snakemake(
        ["--cores", "1", "synthetic_dataset", "--configfile", str(config)], cwd=tmp_path, timeout=600
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    folder = tmp_path / root
    for split in ("train", "val", "test"):
        assert len(list((folder / f"multicoil_{split}").glob("*.h5"))) == 1, split
    assert len(list((folder / "sens_maps").glob("*.h5"))) == 3
    # Only the root's top folder, the logs/benchmarks and Snakemake's own state are new.
    top = root.split("/")[0]
    assert {p.name for p in tmp_path.iterdir()} - before <= {top, "results", ".snakemake"}
    assert not list(tmp_path.rglob("PWNED*"))
