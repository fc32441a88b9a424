"""The rules' conda environment (environment.yml) and the catalog's files: the same pins as pip users
get, this repository's package installed from the path conda resolves, and `--sdm conda` running a
rule in that environment (conda itself stood in for by tests/fake_conda.py, as it cannot be
installed here)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.workflow_utils import BIN, REPO, TINY_CONFIG, copy_workflow, write_config

ENVIRONMENT = yaml.safe_load((REPO / "environment.yml").read_text())


def _pip_entries() -> list[str]:
    [pip] = [dep["pip"] for dep in ENVIRONMENT["dependencies"] if isinstance(dep, dict)]
    return pip


def _pins(lines) -> dict[str, str]:
    """name -> version of every ``name==version`` line (comments, options and paths skipped)."""
    pins = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        requirement = Requirement(line)
        [spec] = requirement.specifier
        assert spec.operator == "==", line
        pins[canonicalize_name(requirement.name)] = spec.version
    return pins


def _package_paths() -> list[str]:
    return [entry for entry in _pip_entries() if entry.startswith("-")]


def test_environment_pins_exactly_the_requirements_at_the_locked_versions():
    requirements = _pins((REPO / "requirements.txt").read_text().splitlines())
    constraints = _pins((REPO / "constraints.txt").read_text().splitlines())
    environment = _pins(_pip_entries())
    assert environment == requirements
    for name, version in environment.items():
        # The lock may carry a local build label (torch 2.13.0+cpu); the public version must agree.
        assert Version(constraints[name]).public == Version(version).public, name
    assert "python=3.11" in ENVIRONMENT["dependencies"] and "pip" in ENVIRONMENT["dependencies"]
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"^PYTHON \?= python3\.11$", makefile, re.M)
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["requires-python"] == ">=3.11"
    # `snakemake --report` needs pygments, which only the test tools pulled in before: `make run`'s
    # environment must build the report the README asks for.
    assert "pygments" in requirements
    # Every package the library declares is pinned (pip resolves smug's unpinned ones to the pins).
    assert {canonicalize_name(d) for d in project["dependencies"]} <= set(environment)


def test_the_package_path_is_the_repository_from_snakemakes_copy_of_the_file():
    """conda runs pip in the directory of the environment file it is given; Snakemake gives it a copy
    at .snakemake/conda/<hash>.yaml under the working directory, the repository root."""
    assert _package_paths() == ["-e ../.."]
    resolved = (REPO / ".snakemake" / "conda" / "../..").resolve()
    assert resolved == REPO.resolve()
    assert tomllib.loads((resolved / "pyproject.toml").read_text())["project"]["name"] == "smug"


def test_catalog_file_declares_conda_and_the_report():
    catalog = yaml.safe_load((REPO / ".snakemake-workflow-catalog.yml").read_text())
    usage = catalog["usage"]
    assert usage["software-stack-deployment"] == {
        "conda": True,
        "apptainer": False,
        "apptainer+conda": False,
        "report": True,
    }
    assert usage["mandatory-flags"]["flags"] == [] and usage["mandatory-flags"]["desc"].strip()
    # The catalog's standardized usage also needs these two.
    assert (REPO / "workflow" / "Snakefile").exists() and (REPO / "config" / "README.md").exists()


def test_license_is_the_mit_license_pyproject_declares():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["license"] == {"text": "MIT"}
    text = (REPO / "LICENSE").read_text()
    assert text.startswith("MIT License\n\nCopyright (c) 2026 The smug-pipeline authors\n")
    assert 'THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND' in text


def _fake_conda(root: Path) -> None:
    """``root/bin/conda`` (tests/fake_conda.py) and the ``root/bin/activate`` Snakemake sources."""
    (root / "bin").mkdir(parents=True)
    conda = root / "bin" / "conda"
    conda.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{REPO / "tests" / "fake_conda.py"}" "$@"\n')
    conda.chmod(0o755)
    (root / "bin" / "activate").write_text(
        'echo "activate $1" >> "$FAKE_CONDA_LOG"\nexport PATH="$1/bin:$PATH"\n'
    )


@pytest.mark.slow
def test_sdm_conda_creates_the_environment_with_the_checkouts_package_and_runs_a_rule_in_it(tmp_path):
    work = copy_workflow(tmp_path / "checkout")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, work / name)
    shutil.copytree(REPO / "smug", work / "smug", ignore=shutil.ignore_patterns("__pycache__"))
    root, calls = tmp_path / "conda", tmp_path / "conda.log"
    _fake_conda(root)
    config = write_config(work, TINY_CONFIG)
    env = {
        **os.environ,
        "PATH": f"{root / 'bin'}{os.pathsep}{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "FAKE_CONDA_ROOT": str(root),
        "FAKE_CONDA_LOG": str(calls),
    }
    result = subprocess.run(
        [
            str(BIN / "snakemake"),
            "--sdm",
            "conda",
            "--cores",
            "1",
            "results/figures/masks.png",
            "--configfile",
            str(config),
        ],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    log = calls.read_text().splitlines()
    [create] = [line for line in log if line.startswith("conda env create")]
    env_file = Path(re.search(r"--file (\S+)", create).group(1))
    prefix = Path(re.search(r"--prefix (\S+)", create).group(1))
    # Snakemake handed conda its copy of environment.yml in .snakemake/conda/, and pip ran there.
    assert env_file.parent == work / ".snakemake" / "conda"
    assert env_file.read_text() == (REPO / "environment.yml").read_text()
    assert f"pip cwd={env_file.parent} rc=0" in log
    # The job ran in that environment, whose smug is the checkout's (editable), not the test's.
    assert f"activate {prefix}" in log
    assert (work / "resources/masks/4x.npz").exists() and (work / "results/figures/masks.png").exists()
    where = subprocess.run(
        [str(prefix / "bin" / "python"), "-c", "import smug; print(smug.__file__)"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert Path(where.stdout.strip()) == work / "smug" / "__init__.py"
