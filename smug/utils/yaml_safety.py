"""The one strict reader of this project's YAML (and JSON) files: configs, specs, the schema.

PyYAML's ``safe_load`` is safe against code execution but not against three quieter failures:

* a duplicate mapping key keeps only the last value, so a config with two ``training:`` blocks
  silently drops the first block's settings;
* aliases (``*name``) share one object per anchor, so a file of a few hundred bytes can describe
  10^8 values: parsing is instant, but anything that walks the result (JSON dump, deepcopy, schema
  validation) never finishes (an "alias bomb");
* a top-level ``__use_yte__`` key makes Snakemake render the file as a YTE template, evaluating
  its ``?expr`` values as Python when it reads the file. This reader never templates; it refuses
  the key so such a file is noticed instead of meaning different things to different readers.

:func:`load_yaml_strict` checks the composed node graph (before any Python object is built or
walked) and refuses each with one line naming the file, the key and the line. The module imports
only the standard library and PyYAML, so the light scripts that read specs start fast.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

# Values that aliases may add beyond the file's own nodes. A config reuses a block or two
# (tens of values); an alias bomb adds millions.
MAX_ALIAS_VALUES = 10_000

_MERGE_TAG = "tag:yaml.org,2002:merge"


class UnsafeYAMLError(ValueError):
    """A YAML or JSON file this project refuses to read; the message is one line naming it."""


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that counts aliases and checks the composed document before constructing it."""

    def __init__(self, stream: str, source: str) -> None:
        super().__init__(stream)
        self.source = source
        self.aliases = 0

    def compose_node(self, parent, index):  # noqa: ANN001 (PyYAML's signature)
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
        return super().compose_node(parent, index)

    def get_single_data(self) -> Any:
        node = self.get_single_node()
        if node is None:
            return None
        _refuse_yte(node, self.source)
        self._check_nodes(node)
        return self.construct_document(node)

    def _check_nodes(self, root: yaml.Node) -> None:
        """Duplicate keys in any mapping, and the values the aliases add, on the node graph (each
        distinct node once, so the check itself cannot be made to explode)."""
        sizes: dict[int, int] = {}
        open_nodes: set[int] = set()

        def size(node: yaml.Node) -> int:
            key = id(node)
            if key in sizes:
                return sizes[key]
            if key in open_nodes:
                raise UnsafeYAMLError(
                    f"{self.source}: line {node.start_mark.line + 1}: an alias refers to a node that "
                    "contains it (a recursive structure): refused"
                )
            open_nodes.add(key)
            total = 1
            if isinstance(node, yaml.SequenceNode):
                total += sum(size(item) for item in node.value)
            elif isinstance(node, yaml.MappingNode):
                self._refuse_duplicates(node)
                total += sum(size(k) + size(v) for k, v in node.value)
            open_nodes.discard(key)
            sizes[key] = total
            return total

        expanded = size(root)
        added = expanded - len(sizes)
        if self.aliases and added > MAX_ALIAS_VALUES:
            raise UnsafeYAMLError(
                f"{self.source}: its {self.aliases} YAML aliases (*name) expand it to {expanded:.3g} "
                f"values ({added:.3g} by the aliases, at most {MAX_ALIAS_VALUES} allowed): refused as "
                "an alias bomb; write the values out or reuse fewer blocks"
            )

    def _refuse_duplicates(self, node: yaml.MappingNode) -> None:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == _MERGE_TAG:
                continue  # `<<: *base` keys may repeat keys of base: that is what a merge is for
            key = self.construct_object(key_node)
            line = key_node.start_mark.line + 1
            try:
                first = seen.get(key)
            except TypeError:
                continue  # unhashable: SafeConstructor refuses it itself
            if first is not None:
                raise UnsafeYAMLError(
                    f"{self.source}: duplicate key {key!r} at line {line} (first at line {first}): "
                    "YAML would silently keep only the last one; merge the two"
                )
            seen[key] = line


def _refuse_yte(root: yaml.Node, source: str) -> None:
    if not isinstance(root, yaml.MappingNode):
        return
    for key_node, _ in root.value:
        if isinstance(key_node, yaml.ScalarNode) and key_node.value == "__use_yte__":
            raise UnsafeYAMLError(
                f"{source}: line {key_node.start_mark.line + 1}: key __use_yte__ makes this a "
                "YTE-templated config: Snakemake evaluates its ?expressions as Python when it reads "
                "the file, before any check (so under Snakemake they have already run); this project "
                "refuses templated configs: remove the key, write plain values, and read an untrusted "
                "config before running it"
            )


def load_yaml_strict(text: str, source: str) -> Any:
    """``yaml.safe_load(text)``, refusing duplicate keys, alias bombs and ``__use_yte__`` with an
    :class:`UnsafeYAMLError` (a ValueError) whose one-line message names ``source`` (a file name,
    or a short description of where ``text`` came from)."""
    loader = _StrictLoader(text, source)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def load_json_strict(text: str, source: str) -> Any:
    """``json.loads(text)``, refusing duplicate keys (JSON keeps the last one silently too)."""

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key, value in items:
            if key in result:
                raise UnsafeYAMLError(
                    f"{source}: duplicate key {key!r} in a JSON object: JSON would silently keep "
                    "only the last one; merge the two"
                )
            result[key] = value
        return result

    return json.loads(text, object_pairs_hook=pairs)


def load_config_file(path: str | Path) -> Any:
    """A config file read as Snakemake reads one (JSON if it parses as JSON, else YAML), strictly."""
    text = Path(path).read_text(encoding="utf-8")
    try:
        return load_json_strict(text, str(path))
    except json.JSONDecodeError:
        return load_yaml_strict(text, str(path))
