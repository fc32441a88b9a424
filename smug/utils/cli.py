"""The scripts' command line: one parser per script, read from the shell or from a Snakemake rule.

Every script in ``scripts/`` is one :class:`argparse.ArgumentParser` read by :func:`parse_args`. By
hand it reads ``sys.argv``; run by a rule's ``script:`` directive it reads the rule itself: each
named input, output and param is the option of the same name (``recon_dir`` is ``--recon-dir``),
and the job's threads are ``--threads``. So a rule passes its settings as plain values, argparse
checks and converts them exactly as it does typed ones, and ``--help`` documents both uses. The
module imports neither torch nor numpy, so the light scripts start fast.
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, Sequence

import yaml

from smug.utils.yaml_safety import load_json_strict, load_yaml_strict

# A rule input named for a volumes option and given as one ``.txt`` file is a volume list
# (resources/splits/*.txt), read as ``@LIST``.
_LIST_SUFFIX = ".txt"


# config/config.yaml of the checkout this package lives in: the one home of the pipeline's defaults.
CONFIG_FILE = Path(__file__).resolve().parents[2] / "config" / "config.yaml"


@functools.lru_cache(maxsize=None)
def _read_config(config_file: Path) -> dict:
    # A script declares many options from this file: it is read and parsed once per process, by the
    # strict reader (duplicate keys, alias bombs and __use_yte__ refused, naming the file).
    return load_yaml_strict(Path(config_file).read_text(encoding="utf-8"), str(config_file))


def config_value(key: str, config_file: Path = CONFIG_FILE) -> Any:
    """The value of a dotted key (``evaluation.pgd.steps``; ``seeds.0`` is a list's first item) in
    ``config_file`` (a copy: the caller may keep or change it)."""
    node = _read_config(config_file)
    for part in key.split("."):
        node = node[int(part)] if isinstance(node, list) else node[part]
    return copy.deepcopy(node)


def add_config_option(parser: argparse.ArgumentParser, flag: str, key: str, **kwargs: Any) -> None:
    """An option for a pipeline setting, defaulting to the setting's value in config/config.yaml.

    Scripts run by the workflow always receive the setting from the rule; the default is there for
    a person running the script by hand, taken from the one place the pipeline's defaults live.
    Where that file is absent (the package installed on its own) the option is required instead.
    """
    help_text = kwargs.pop("help", "")
    if CONFIG_FILE.is_file():
        default = config_value(key)
        if isinstance(default, dict) and kwargs.get("nargs") in ("+", "*"):
            default = _key_value_words(default)
        kwargs["default"] = default
        help_text += f" (default: {key} of config/config.yaml, {default})"
    else:
        kwargs["required"] = True
        help_text += f" (the pipeline's {key})"
    parser.add_argument(flag, help=help_text.strip(), **kwargs)


def add_espirit_options(parser: argparse.ArgumentParser) -> None:
    """ESPIRiT's settings (``--num-acs``, ``--kernel-size``, ``--threshold``, ``--crop``), the
    pipeline's fastmri.sens_maps."""
    helps = {
        "num_acs": "calibration columns",
        "kernel_size": "kernel side",
        "threshold": "singular values kept, relative",
        "crop": "eigenvalue crop",
    }
    for key, text in helps.items():
        kind = float if key in ("threshold", "crop") else int
        add_config_option(
            parser,
            "--" + key.replace("_", "-"),
            f"fastmri.sens_maps.{key}",
            type=kind,
            help=f"ESPIRiT {text}",
        )


def add_test_data_options(
    parser: argparse.ArgumentParser, mask_help: str | None = "column mask .npz"
) -> None:
    """The test slices a model is run on: ``--test`` (volumes or @LIST), ``--mask`` (unless
    ``mask_help`` is None), ``--sens-maps`` and ``--test-slices``."""
    parser.add_argument(
        "--test",
        nargs="+",
        required=True,
        help="test volumes (fastMRI HDF5), or @LIST: a file with one path per line",
    )
    if mask_help is not None:
        parser.add_argument("--mask", required=True, help=mask_help)
    parser.add_argument(
        "--sens-maps",
        nargs="+",
        help="sensitivity-map files, or folders of them (multicoil data), searched in order",
    )
    parser.add_argument("--test-slices", type=int, help="central test slices (default all)")


def add_compute_arguments(parser: argparse.ArgumentParser) -> None:
    """``--device auto|cpu|cuda`` and ``--threads N``, the options of every script that runs a model
    (read them with :func:`smug.utils.runtime.select_device` and :func:`smug.utils.runtime.setup_compute`)."""
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")


def add_memory_arguments(parser: argparse.ArgumentParser) -> None:
    """``--checkpoint-unrolls`` and ``--sample-chunk N``, the memory bounds of every script that
    backpropagates through an unrolled network (:func:`smug.models.set_memory`; config ``memory``)."""
    parser.add_argument(
        "--checkpoint-unrolls",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="recompute each unroll in the backward pass instead of keeping its activations",
    )
    parser.add_argument(
        "--sample-chunk",
        type=int,
        help="denoise the smoothing's M draws this many at a time (default: all at once)",
    )


def argument_words(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> list[str]:
    """The script's argument words: ``argv``; else, under a Snakemake ``script:`` rule, the rule's
    named files and params (:func:`rule_arguments`, with the job's log receiving stdout and
    stderr); else ``sys.argv``'s."""
    if argv is not None:
        return list(argv)
    job = getattr(sys.modules.get("__main__"), "snakemake", None)
    if job is None:
        return sys.argv[1:]
    redirect_to_log(job.log)
    return rule_arguments(parser, job)


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The script's arguments (:func:`argument_words`), parsed.

    Each ``@LIST`` argument is replaced by the lines of the file LIST (one argument per non-blank
    line, as the pipeline's volume lists are written). A missing or empty list is a usage error
    naming the file, not argparse's "expected at least one argument".
    """
    expanded: list[str] = []
    for arg in argument_words(parser, argv):
        if not (arg.startswith("@") and len(arg) > 1):
            expanded.append(arg)
            continue
        path = Path(arg[1:])
        if not path.is_file():
            parser.error(f"list file {path} (given as {arg}) does not exist")
        lines = [line.strip() for line in path.read_text().splitlines() if line.strip()]
        if not lines:
            parser.error(f"list file {path} (given as {arg}) is empty: it names no volume")
        expanded.extend(lines)
    return parser.parse_args(expanded)


def rule_arguments(parser: argparse.ArgumentParser, job: Any) -> list[str]:
    """Argument words of a Snakemake job (the ``snakemake`` object of a ``script:`` rule).

    Each named input and output that is an option of ``parser`` (by ``dest``) is passed to it; the
    others are dependencies the rule tracks, or products the script writes under a folder option
    (the masks under ``--out-dir``). Every param must be an option: a misspelt one is an error
    naming it, never a setting silently dropped. Values become words as a person would type them:
    None is left out, booleans set or clear a flag, lists give one word per item, mappings are one
    JSON word (``KEY=VALUE`` words for an option of several values), and one ``.txt`` input for an
    option taking several values is a volume list (``@LIST``).
    """
    actions = {action.dest: action for action in parser._actions if action.option_strings}
    unknown = [name for name, _ in job.params.items() if name not in actions]
    if unknown:
        raise ValueError(
            f"rule {job.rule}: params {', '.join(unknown)} are not options of {parser.prog} "
            f"(options: {', '.join(sorted(actions))})"
        )
    words: list[str] = []
    for section in (job.input, job.output, job.params):
        for name, value in section.items():
            if name not in actions:
                continue
            is_list_file = section is job.input and not _is_list(value) and str(value).endswith(_LIST_SUFFIX)
            if is_list_file and actions[name].nargs in ("+", "*"):
                value = f"@{value}"
            words += option_words(actions[name], value)
    if "threads" in actions:
        words += ["--threads", str(job.threads)]
    return words


def option_words(action: argparse.Action, value: Any) -> list[str]:
    """The words that give ``action`` the value ``value`` (empty for None or a flag left as is)."""
    option = action.option_strings[0]
    if value is None:
        return []
    if action.nargs == 0:
        if isinstance(action, argparse.BooleanOptionalAction):
            return [action.option_strings[0 if value else 1]]
        return [option] if bool(value) != bool(action.default) else []
    if isinstance(value, dict) and action.nargs in ("+", "*"):
        value = _key_value_words(value)
    if _is_list(value):
        if action.nargs not in ("+", "*") and not isinstance(action.nargs, int):
            raise ValueError(f"{option} takes one value, but the rule gives a list: {list(value)}")
        return [option, *(_word(item) for item in value)] if len(value) or action.nargs == "*" else []
    return [option, _word(value)]


def _key_value_words(mapping: dict) -> list[str]:
    # A mapping given to an option of several values is KEY=VALUE words (``--volumes train=6 val=2``).
    return [f"{key}={value}" for key, value in mapping.items()]


def _is_list(value: Any) -> bool:
    # Snakemake gives a named list of files as a Namedlist, a list subclass.
    return isinstance(value, (list, tuple))


def _word(value: Any) -> str:
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return str(value)


def redirect_to_log(log: Sequence[str]) -> None:
    """Send the process's stdout and stderr (Python's and any library's) to the job's log file."""
    if not log:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    handle = open(log[0], "w")
    for stream in (1, 2):
        os.dup2(handle.fileno(), stream)


def load_spec(text_or_path: str) -> dict[str, Any]:
    """A spec given as inline JSON (as a rule passes it) or as a JSON/YAML file path (by hand).

    Inline text is parsed as JSON, not YAML: YAML 1.1 reads ``1e-06`` as a string. Both are read by
    :mod:`smug.utils.yaml_safety`'s strict readers: a duplicate key, an alias bomb or ``__use_yte__`` is a
    ValueError naming the spec.
    """
    inline = text_or_path.lstrip().startswith("{")
    if not inline and not Path(text_or_path).is_file():
        raise ValueError(f"spec {text_or_path!r} is neither inline JSON nor an existing file")
    text = text_or_path if inline else Path(text_or_path).read_text()
    source = "inline spec" if inline else text_or_path
    try:
        if inline or text_or_path.endswith(".json"):
            spec = load_json_strict(text, source)
        else:
            spec = load_yaml_strict(text, source)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ValueError(f"cannot parse spec {text_or_path[:80]!r}: {exc}") from exc
    if not isinstance(spec, dict):
        raise ValueError(f"spec must be a mapping, got {type(spec).__name__}")
    return spec


def setup_logging(verbose: bool = True) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
