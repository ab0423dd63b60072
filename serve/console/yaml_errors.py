"""Field errors placed on the YAML text they are about: ``webhook.url`` -> the line
of ``url:`` under ``webhook:``, so the editor shows each error beside its field."""

from __future__ import annotations

from typing import Any, Optional

import yaml


def locate_errors(text: str, errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``errors`` (``{field, message}``) with ``line`` (1-based, or None when unknown)."""
    root = _root(text)
    return [{**err, "line": _line_of(root, str(err.get("field", "")))} for err in errors]


def _root(text: str) -> Optional[yaml.Node]:
    try:
        return yaml.compose(text)
    except yaml.YAMLError:
        return None


def _line_of(node: Optional[yaml.Node], field: str) -> Optional[int]:
    line = None
    for part in field.split(".") if field else []:
        if not isinstance(node, yaml.MappingNode):
            break
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value == part:
                line, node = key.start_mark.line + 1, value
                break
        else:
            break
    return line
