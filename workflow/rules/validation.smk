# Config validation with one short message: the key's path, what is wrong, the closest valid key
# or value, instead of jsonschema's dump of the schema. The schema itself stays the one authority;
# the checks beyond it are smug.study.config_checks, run here when the DAG is built.
import csv
import tempfile
from pathlib import Path

import jsonschema
import yaml

from snakemake.exceptions import WorkflowError

from smug.study import apply_settings
from smug.study import config_checks as checks
from smug.utils import UnsafeYAMLError, load_config_file


def resolved_schema(schema_path):
    return checks.resolved_schema(str(Path(workflow.basedir) / schema_path))


def run_check(check, *args, **kwargs):
    """A check of smug.study.config_checks on this config, its error one WorkflowError line."""
    try:
        check(config, *args, **kwargs)
    except ValueError as exc:
        raise WorkflowError(str(exc)) from None


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


def validate_config(schema_path):
    """The config files read strictly, the numbers finite, then Snakemake's validate against the
    resolved schema, its error shortened to one line."""
    check_config_files()
    run_check(checks.check_finite)
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
        raise WorkflowError(checks.config_error_message(error)) from None


def check_ablations(schema_path):
    """Every ablation variant's config must be a valid config (the schema's types and ranges)."""
    validator = jsonschema.Draft202012Validator(resolved_schema(schema_path))
    for name, variant in ABLATION_MODELS.items():
        error = jsonschema.exceptions.best_match(
            validator.iter_errors(apply_settings(config, dict(variant.settings)))
        )
        if error is not None:
            raise WorkflowError(f"ablation variant {name}: {checks.config_error_message(error)}")


# ---- references between config entries, checked when the DAG is built ----------------------------


def check_fastmri_splits():
    """The splits a run reads must not share volumes where they draw from the same datasets."""
    used = {}
    for split, anatomy in checks.used_splits(config):
        entry = plan.fastmri_split(config, split, anatomy)
        key = (tuple(entry["dataset"]), anatomy)
        stop = float("inf") if entry["count"] is None else entry["start"] + entry["count"]
        for other, (start, other_stop) in used.get(key, {}).items():
            if entry["start"] < other_stop and start < stop:
                raise ValueError(
                    f"fastmri.splits.{split}.{anatomy} and fastmri.splits.{other}.{anatomy} overlap "
                    f"in {', '.join(entry['dataset'])}: give them disjoint start/count ranges"
                )
        used.setdefault(key, {})[split] = (entry["start"], stop)


def warn_unhealthy_models(path):
    """One line per unhealthy model of a finished run's health table (the run itself succeeds)."""
    if not Path(path).exists():
        return
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            if row["healthy"] != "True":
                print(f"WARNING: model {row['model']} is not healthy: {row['failed_checks']} (see {path})")
