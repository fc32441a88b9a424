# Config validation with one short message: the key's path, what is wrong, the closest valid key
# or value, instead of jsonschema's dump of the schema. The schema itself stays the one authority.
import difflib

from snakemake.exceptions import WorkflowError

NESTED_CONFIG_HINT = (
    "Nested keys are set in a YAML file passed with --configfile (merged key by key into "
    "config/config.yaml); --config sets top-level keys only, e.g. --config seed=1 device=cpu."
)


def validate_config(schema_path):
    """Snakemake's validate (which also fills in the schema's defaults), with its error shortened."""
    try:
        validate(config, schema_path)
    except WorkflowError as exc:
        # Snakemake raises while handling jsonschema's ValidationError, which is its context.
        error = exc.__context__
        if not (hasattr(error, "validator") and hasattr(error, "absolute_path")):
            raise
        raise WorkflowError(config_error_message(error)) from None


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
