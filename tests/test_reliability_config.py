"""Config edge cases (the README's "Reliability" section): NaN and infinity, duplicate keys, alias
bombs and YTE templates are refused with one line naming the key or the file, by the strict reader
(smug.utils.yaml_safety) and by the workflow's config validation when the DAG is built."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml

from smug.utils import config_value, load_config_file, load_json_strict, load_spec, load_yaml_strict
from smug.utils import MAX_ALIAS_VALUES, UnsafeYAMLError
from tests.workflow_utils import REPO, copy_workflow, snakemake


def alias_bomb(levels: int = 8) -> str:
    """YAML of a few hundred bytes whose lists hold 10**levels leaves once the aliases are expanded."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


# ---- the strict reader ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, key, line, first",
    [
        ("training:\n  lr: 0.5\nseed: 3\ntraining:\n  batch_size: 2\n", "'training'", 4, 1),
        ("training:\n  lr: 0.5\n  epochs: 2\n  lr: 0.1\n", "'lr'", 4, 2),
        ("{a: 1, a: 2}\n", "'a'", 1, 1),
        ("1: one\n0x1: also one\n", "1", 2, 1),
    ],
    ids=["top_level_block", "nested", "flow", "same_value_other_spelling"],
)
def test_duplicate_keys_are_named_with_their_lines(text, key, line, first):
    with pytest.raises(UnsafeYAMLError) as error:
        load_yaml_strict(text, "dup.yaml")
    message = str(error.value)
    assert message.startswith(f"dup.yaml: duplicate key {key} at line {line} (first at line {first})")
    assert "\n" not in message


def test_a_few_anchors_aliases_and_merge_keys_still_load():
    text = (
        "base: &base {lr: 0.001, batch_size: 2}\n"
        "training:\n  <<: *base\n  lr: 0.01\n"
        "eps: &eps [0.01, 0.02]\n"
        "attacks: {a: {eps: *eps}, b: {eps: *eps}}\n"
    )
    assert load_yaml_strict(text, "ok.yaml") == {
        "base": {"lr": 0.001, "batch_size": 2},
        "training": {"lr": 0.01, "batch_size": 2},
        "eps": [0.01, 0.02],
        "attacks": {"a": {"eps": [0.01, 0.02]}, "b": {"eps": [0.01, 0.02]}},
    }


def test_the_shipped_config_and_schema_read_as_with_safe_load():
    for path in (REPO / "config/config.yaml", REPO / "workflow/schemas/config.schema.yaml"):
        text = path.read_text()
        assert load_yaml_strict(text, str(path)) == yaml.safe_load(text)


def test_an_alias_bomb_is_refused_before_it_is_expanded():
    start = time.perf_counter()
    with pytest.raises(
        UnsafeYAMLError, match=r"^bomb\.yaml: its 70 YAML aliases .* refused as an alias bomb"
    ):
        load_yaml_strict(alias_bomb(8), "bomb.yaml")
    assert time.perf_counter() - start < 1
    # The budget is on the values the aliases add: a 10**3-leaf structure passes, 10**5 does not.
    assert len(load_yaml_strict(alias_bomb(3), "small.yaml")["a2"]) == 10
    assert 10**5 > MAX_ALIAS_VALUES
    with pytest.raises(UnsafeYAMLError, match="alias bomb"):
        load_yaml_strict(alias_bomb(5), "bomb5.yaml")


def test_a_recursive_alias_is_refused():
    with pytest.raises(UnsafeYAMLError, match=r"^loop\.yaml: line 1: .*recursive"):
        load_yaml_strict("a: &a [1, *a]\n", "loop.yaml")


def test_use_yte_is_refused_and_nothing_is_evaluated(tmp_path):
    marker = tmp_path / "ran"
    text = f"__use_yte__: true\nseed: \"?open({str(marker)!r}, 'w') and 1\"\n"
    with pytest.raises(
        UnsafeYAMLError, match=r"^yte\.yaml: line 1: key __use_yte__ makes this a YTE-templated"
    ):
        load_yaml_strict(text, "yte.yaml")
    assert not marker.exists()


def test_json_configs_refuse_duplicate_keys_too(tmp_path):
    with pytest.raises(UnsafeYAMLError, match=r"^j\.json: duplicate key 'seed'"):
        load_json_strict('{"seed": 1, "seed": 2}', "j.json")
    # load_config_file reads a file as Snakemake does: JSON when it parses as JSON, else YAML.
    (tmp_path / "c.json").write_text('{"seed": 1, "training": {"lr": 0.1}}')
    (tmp_path / "c.yaml").write_text("seed: 1\nseed: 2\n")
    assert load_config_file(tmp_path / "c.json") == {"seed": 1, "training": {"lr": 0.1}}
    with pytest.raises(UnsafeYAMLError, match=r"c\.yaml: duplicate key 'seed' at line 2"):
        load_config_file(tmp_path / "c.yaml")


def test_the_scripts_yaml_readers_are_strict(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text("name: modl\nkind: unrolled\nname: smug\n")
    with pytest.raises(ValueError, match=r"spec\.yaml: duplicate key 'name' at line 3"):
        load_spec(str(spec))
    with pytest.raises(ValueError, match=r"inline spec: duplicate key 'name'"):
        load_spec('{"name": "modl", "name": "smug"}')
    config = tmp_path / "config.yaml"
    config.write_text("seed: 0\ntraining: {lr: 0.1}\ntraining: {epochs: 2}\n")
    with pytest.raises(ValueError, match=r"config\.yaml: duplicate key 'training' at line 3"):
        config_value("seed", config)


# ---- through a real `snakemake -n` ----------------------------------------------------------------


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return copy_workflow(tmp_path_factory.mktemp("workflow"))


def dry_run(workdir: Path, *args: str, timeout: float = 300) -> str:
    result = snakemake(["-n", *args], workdir, timeout=timeout)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-2000:]
    assert len(output.strip().splitlines()) <= 6, output
    return output


def config_file(workdir: Path, name: str, text: str) -> str:
    (workdir / name).write_text(text)
    return str(workdir / name)


@pytest.mark.parametrize(
    "text, message",
    [
        ("training:\n  lr: .nan\n", "config error: config key training.lr is nan: numbers must be finite"),
        (
            "evaluation:\n  attacks:\n    pgd_kspace_linf:\n      eps: [0.01, .inf]\n",
            "config error: config key evaluation.attacks.pgd_kspace_linf.eps[1] is inf: numbers must be finite",
        ),
        (
            "classical:\n  lams: [-.inf]\n",
            "config error: config key classical.lams[0] is -inf: numbers must be finite",
        ),
        ('{"training": {"lr": NaN}}', "config error: config key training.lr is nan: numbers must be finite"),
    ],
    ids=["nan", "inf_in_list", "minus_inf", "json_nan"],
)
def test_non_finite_numbers_in_a_configfile_are_named(workdir, text, message):
    """JSON Schema's minimum/maximum comparisons are false for NaN: the schema alone lets it in."""
    output = dry_run(workdir, "--configfile", config_file(workdir, "nonfinite.yaml", text))
    assert message in output, output


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_non_finite_numbers_in_config_overrides_are_named(workdir, value):
    output = dry_run(workdir, "--config", f"seed={value}")
    assert f"config error: config key seed is {value}: numbers must be finite" in output, output


def test_duplicate_keys_in_a_configfile_are_named_with_their_line(workdir):
    path = config_file(workdir, "dup.yaml", "training:\n  lr: 0.5\nseed: 3\ntraining:\n  batch_size: 2\n")
    output = dry_run(workdir, "--configfile", path)
    assert f"config error: {path}: duplicate key 'training' at line 4 (first at line 1)" in output, output


def test_an_alias_bomb_configfile_is_refused_quickly(workdir):
    """10**8 leaves: before the strict reader, the dry run was still busy after 120 s."""
    path = config_file(workdir, "bomb.yaml", alias_bomb(8) + "seed: 1\n")
    start = time.perf_counter()
    output = dry_run(workdir, "--configfile", path, timeout=120)
    assert time.perf_counter() - start < 20
    assert (
        f"config error: {path}: its 70 YAML aliases" in output and "refused as an alias bomb" in output
    ), output


def test_a_yte_templated_configfile_stops_the_dag_build(workdir, tmp_path):
    """Snakemake renders the template (runs its Python) when it reads the file, before the workflow's
    code: that cannot be prevented from inside the workflow (the marker is written, as the README
    says), but the DAG build then stops, naming the file."""
    marker = tmp_path / "yte_ran"
    text = f"__use_yte__: true\nseed: \"?open({str(marker)!r}, 'w').close() or 1\"\n"
    path = config_file(workdir, "yte.yaml", text)
    output = dry_run(workdir, "--configfile", path)
    assert (
        f"config error: {path}: line 1: key __use_yte__ makes this a YTE-templated config" in output
    ), output
    assert marker.exists(), "Snakemake no longer renders YTE configs: update the README's Reliability section"


def test_a_plain_json_configfile_still_runs(workdir):
    path = config_file(workdir, "plain.json", json.dumps({"seeds": [3], "training": {"lr": 0.01}}))
    result = snakemake(["-n", "--quiet", "rules", "--configfile", path], workdir, timeout=300)
    assert result.returncode == 0, (result.stdout + result.stderr)[-2000:]
