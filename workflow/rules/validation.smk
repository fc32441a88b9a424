# Config validation with one short message: the key's path, what is wrong, the closest valid key
# or value, instead of jsonschema's dump of the schema. The schema itself stays the one authority.
import csv
import difflib
import functools
import math
import tempfile
from pathlib import Path

import jsonschema
import yaml

from snakemake.exceptions import WorkflowError

from smug.study import apply_settings, check_claims, schema_names
from smug.utils import UnsafeYAMLError, load_config_file, load_yaml_strict

NESTED_CONFIG_HINT = (
    "Nested keys are set in a YAML file passed with --configfile (merged key by key into "
    "config/config.yaml); --config sets top-level keys only, e.g. --config device=cpu."
)


@functools.cache
def resolved_schema(schema_path):
    """The config schema with the registry's names filled in (smug.study.methods.schema_names), read
    once (the config and every ablation variant are validated against it; nobody modifies it)."""
    path = Path(workflow.basedir) / schema_path
    schema = load_yaml_strict(path.read_text(), str(path))
    for name, names in schema_names().items():
        schema["$defs"][name]["enum"] = names
    return schema


def check_config_files():
    """Re-read every config file Snakemake loaded (workflow.configfiles: the Snakefile's configfile
    and each --configfile) with smug.utils.yaml_safety's strict reader. Snakemake's own loader keeps the
    last of duplicate keys, expands aliases without limit and renders __use_yte__ templates; this
    refuses all three, before anything walks the config (an alias bomb explodes only when walked)."""
    for path in workflow.configfiles:
        try:
            load_config_file(path)
        except UnsafeYAMLError as exc:
            raise WorkflowError(f"config error: {exc}") from None


def non_finite_number(value, path=""):
    """(key path, value) of the first NaN or infinity in value, or None."""
    if isinstance(value, float) and not math.isfinite(value):
        return path, value
    if isinstance(value, dict):
        items = ((f"{path}.{key}" if path else str(key), item) for key, item in value.items())
    elif isinstance(value, (list, tuple)):
        items = ((f"{path}[{index}]", item) for index, item in enumerate(value))
    else:
        return None
    return next(filter(None, (non_finite_number(item, where) for where, item in items)), None)


def check_finite():
    """NaN and infinity anywhere in the config (a file or --config) are refused, naming the key:
    JSON Schema's minimum/maximum comparisons are false for NaN, so the schema lets them through."""
    found = non_finite_number(config)
    if found is not None:
        raise WorkflowError(f"config error: config key {found[0]} is {found[1]}: numbers must be finite")


def validate_config(schema_path):
    """The config files read strictly, the numbers finite, then Snakemake's validate against the
    resolved schema, its error shortened to one line."""
    check_config_files()
    check_finite()
    try:
        with tempfile.TemporaryDirectory() as folder:
            resolved = Path(folder) / "config.schema.yaml"
            resolved.write_text(yaml.safe_dump(resolved_schema(schema_path)))
            validate(config, str(resolved))
    except WorkflowError as exc:
        # Snakemake raises while handling jsonschema's ValidationError, which is its context.
        error = exc.__context__
        if not (hasattr(error, "validator") and hasattr(error, "absolute_path")):
            raise
        raise WorkflowError(config_error_message(error)) from None


def check_ablations(schema_path):
    """Every ablation variant's config must be a valid config (the schema's types and ranges)."""
    validator = jsonschema.Draft202012Validator(resolved_schema(schema_path))
    for name, variant in ABLATION_MODELS.items():
        error = jsonschema.exceptions.best_match(
            validator.iter_errors(apply_settings(config, dict(variant.settings)))
        )
        if error is not None:
            raise WorkflowError(f"ablation variant {name}: {config_error_message(error)}")


def config_error_message(error):
    """One line (two with the --config hint) for a jsonschema ValidationError."""
    path = ".".join(str(part) for part in error.absolute_path)
    where = path or "the config"
    if error.validator == "additionalProperties":
        allowed = list(error.schema.get("properties", {}))
        unknown = [key for key in error.instance if key not in allowed]
        key = str(unknown[0]) if unknown else "?"
        full = ".".join([*error.absolute_path, key])
        close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
        if close:
            hint = f"did you mean {'.'.join([*error.absolute_path, close[0]])}?"
        else:
            hint = f"valid: {', '.join(allowed)}"
        place = f"in {path}" if path else "at the top level"
        return f"config error: unknown key {full!r} {place} ({hint}). {NESTED_CONFIG_HINT}"
    if error.validator == "enum":
        choices = [str(choice) for choice in error.validator_value]
        close = difflib.get_close_matches(str(error.instance), choices, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]!r}? " if close else ""
        return f"config error: {where}: {error.instance!r} is not allowed; {hint}valid: {', '.join(choices)}"
    if error.validator == "pattern":
        allowed_form = error.schema.get("description", f"the pattern {error.validator_value}")
        return (
            f"config error: {where}: {error.instance!r} is not allowed. {' '.join(str(allowed_form).split())}"
        )
    if error.validator == "type":
        return f"config error: {where}: {error.instance!r} is not of type {error.validator_value!r}"
    return f"config error: {where}: {error.message}"


# ---- references between config entries, checked when the DAG is built ----------------------------


def used_splits():
    """(split, anatomy) of every split list the run reads."""
    train = config["data"]["train_anatomy"]
    pairs = [("train", train), ("val", train), ("test", train)]
    if config["data"]["shift_anatomy"]:
        pairs.append(("test", config["data"]["shift_anatomy"]))
    return pairs


def check_fastmri_splits():
    """The splits a run reads must not share volumes where they draw from the same datasets."""
    used = {}
    for split, anatomy in used_splits():
        entry = fastmri_split(split, anatomy)
        key = (tuple(entry["dataset"]), anatomy)
        stop = float("inf") if entry["count"] is None else entry["start"] + entry["count"]
        for other, (start, other_stop) in used.get(key, {}).items():
            if entry["start"] < other_stop and start < stop:
                raise ValueError(
                    f"fastmri.splits.{split}.{anatomy} and fastmri.splits.{other}.{anatomy} overlap "
                    f"in {', '.join(entry['dataset'])}: give them disjoint start/count ranges"
                )
        used.setdefault(key, {})[split] = (entry["start"], stop)


def check_shift_anatomy():
    shift = config["data"]["shift_anatomy"]
    if shift == config["data"]["train_anatomy"]:
        raise ValueError(
            f"config error: data.shift_anatomy must differ from data.train_anatomy ({shift!r}), or be null"
        )


def check_claims_config(ablations=False):
    """Each claim names models, perturbations, levels and metrics this config evaluates
    (smug.study.claims.check_claims): one line naming the claim's id and key otherwise. The claims on the
    ablations (source_table: ablations) are checked only when an ablation is built
    (ablations=True), so the main pipeline never depends on the ablations' settings."""
    claims = [c for c in config["claims"] if is_ablation_claim(c) == ablations]
    ids = [c.get("id") for c in config["claims"] if isinstance(c, dict)]
    repeated = sorted({i for i in ids if ids.count(i) > 1}, key=str)
    try:
        if repeated:
            raise ValueError(f"config error: claims: the id {repeated[0]!r} is given more than once")
        check_claims(claims, config)
    except ValueError as exc:
        raise WorkflowError(str(exc)) from None


def is_ablation_claim(claim):
    return isinstance(claim, dict) and claim.get("source_table") == "ablations"


def check_config_references():
    """Config lists that name entries of another list must name existing ones: a misspelt or
    unevaluated model in evaluation.figure.models would otherwise leave a finished folder's figures
    stale. The schema checks each name's spelling; this checks what it refers to, when the DAG is
    built, with one message naming the entry, its key and the valid names."""
    evaluation = config["evaluation"]
    models, attacks = evaluation["models"], list(evaluation["attacks"])
    references = {
        "evaluation.figure.models": (evaluation["figure"]["models"], "evaluation.models", models),
        "evaluation.figure.attack": ([evaluation["figure"]["attack"]], "evaluation.attacks", attacks),
    }
    if "untrained" in models:
        references["untrained.attacks"] = (config["untrained"]["attacks"], "evaluation.attacks", attacks)
    for key, (names, target, valid) in references.items():
        for name in names:
            if name not in valid:
                raise ValueError(
                    f"config error: {key}: {name!r} is not in {target} (valid: {', '.join(valid)})"
                )


def check_ablation_attacks():
    """ablations.attacks must name configured attacks; checked when an ablation is built, so a
    config that drops attacks from evaluation.attacks still runs the main pipeline."""
    for attack in config["ablations"]["attacks"]:
        if attack not in config["evaluation"]["attacks"]:
            raise ValueError(
                f"config error: ablations.attacks: {attack!r} is not in evaluation.attacks "
                f"(valid: {', '.join(config['evaluation']['attacks'])})"
            )


def warn_unhealthy_models(path):
    """One line per unhealthy model of a finished run's health table (the run itself succeeds)."""
    if not Path(path).exists():
        return
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            if row["healthy"] != "True":
                print(f"WARNING: model {row['model']} is not healthy: {row['failed_checks']} (see {path})")
