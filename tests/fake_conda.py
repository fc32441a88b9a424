"""A stand-in for the `conda` command, enough for `snakemake --sdm conda` to create and use the rules'
environment on a machine without conda.

Snakemake asks conda for its version, its channel priority and its installation (``conda info
--json``, whose ``conda_prefix`` holds ``bin/activate``), then runs ``conda env create --file F
--prefix P`` and activates ``P`` with ``source <conda_prefix>/bin/activate P`` before each job.
Creating ``P`` here is a virtual environment that sees the test interpreter's installed packages (the
pins and pip; conda would install them from the index), then conda's own pip step, as conda implements
it (``conda.env.installers.pip``): the ``pip:`` entries of ``F`` are written to a requirements file in
the directory of ``F`` and ``pip install -U -r <file> --exists-action=b`` runs with that directory as
its working directory, so relative paths resolve from there. pip runs offline here (no index, no
build isolation). The installation is ``$FAKE_CONDA_ROOT``; every call is appended to ``$FAKE_CONDA_LOG``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml


def log(*words: str) -> None:
    with open(os.environ["FAKE_CONDA_LOG"], "a") as handle:
        handle.write(" ".join(words) + "\n")


def option(args: list[str], name: str) -> str:
    return args[args.index(name) + 1].strip('"').strip("'")


def create(env_file: Path, prefix: Path) -> None:
    spec = yaml.safe_load(env_file.read_text())
    pip = [entry for dep in spec["dependencies"] if isinstance(dep, dict) for entry in dep.get("pip", [])]
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(prefix)], check=True)
    # The test interpreter's packages (pip and the pins), as a plain path: its own .pth files, among
    # them the checkout's editable smug, are not run, so smug comes only from this environment.
    parent = next(Path(p) for p in sys.path if p.endswith("site-packages") and Path(p).is_dir())
    [site] = (prefix / "lib").glob("python*/site-packages")
    (site / "_test_interpreter.pth").write_text(f"{parent}\n")
    # conda: the requirements file and pip's working directory are the environment file's directory.
    workdir = env_file.resolve().parent
    with tempfile.NamedTemporaryFile(
        "w", prefix="condaenv.", suffix=".requirements.txt", dir=workdir, delete=False
    ) as requirements:
        requirements.write("\n".join(pip))
    env = {**os.environ, "PIP_NO_INDEX": "1", "PIP_NO_BUILD_ISOLATION": "0"}
    try:
        result = subprocess.run(
            [
                str(prefix / "bin" / "python"),
                "-m",
                "pip",
                "install",
                "-U",
                "-r",
                requirements.name,
                "--exists-action=b",
            ],
            cwd=workdir,
            env=env,
            capture_output=True,
            text=True,
        )
    finally:
        os.remove(requirements.name)
    log("pip", f"cwd={workdir}", f"rc={result.returncode}")
    if result.returncode != 0:
        sys.exit(f"pip failed:\n{result.stdout}\n{result.stderr}")


def main(args: list[str]) -> None:
    log("conda", *args)
    if args == ["--version"]:
        print("conda 24.11.0")
    elif args[:2] == ["info", "--json"]:
        print(
            json.dumps(
                {
                    "conda_prefix": os.environ["FAKE_CONDA_ROOT"],
                    "platform": "linux-64",
                    "conda_version": "24.11.0",
                }
            )
        )
    elif args[:2] == ["config", "--get"]:
        print(json.dumps({"get": {"channel_priority": "strict"}}))
    elif args[:1] == ["clean"]:
        pass  # no package cache to clean
    elif args[:2] == ["env", "create"]:
        create(Path(option(args, "--file")), Path(option(args, "--prefix")))
    else:
        sys.exit(f"fake conda: unsupported command {args}")


if __name__ == "__main__":
    main(sys.argv[1:])
