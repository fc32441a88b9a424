"""One home per default: config/config.yaml sets every key the schema declares, and the schema
(types, ranges and names) has no defaults of its own to contradict it."""

import yaml

from tests.workflow_utils import REPO


def schema_defaults(node, path="schema"):
    """Paths of every ``default`` keyword in a JSON schema (not of properties named ``default``)."""
    found = [path] if isinstance(node, dict) and "default" in node else []
    if isinstance(node, dict):
        for key, sub in node.items():
            if key in ("properties", "$defs"):
                found += [p for name, s in sub.items() for p in schema_defaults(s, f"{path}.{name}")]
            elif key != "default":
                found += schema_defaults(sub, f"{path}.{key}")
    elif isinstance(node, list):
        found += [p for i, s in enumerate(node) for p in schema_defaults(s, f"{path}.{i}")]
    return found


def unset_keys(schema, config, path="config"):
    """Keys the schema declares (``properties``, recursively) that ``config`` does not set."""
    missing = []
    for key, sub in schema.get("properties", {}).items():
        if not isinstance(config, dict) or key not in config:
            missing.append(f"{path}.{key}")
        else:
            missing += unset_keys(sub, config[key], f"{path}.{key}")
    return missing


def test_every_schema_key_is_set_by_config_yaml_and_the_schema_has_no_defaults():
    """One home per default: config/config.yaml sets every key the schema knows, and the schema has
    no defaults of its own to contradict it."""
    schema = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    assert schema_defaults(schema) == []
    assert unset_keys(schema, config) == []
    # The checks can fail: a default and an unset key are found.
    assert schema_defaults({"properties": {"a": {"type": "integer", "default": 1}}}) == ["schema.a"]
    assert unset_keys({"properties": {"a": {"properties": {"b": {}}}}}, {"a": {}}) == ["config.a.b"]
