"""The shape of the code, checked: the domain core stays free of the edges'
frameworks, and every module the server and CLI import is a declared runtime
dependency (a module only the test extra brings would break the plain install)."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ["chronos", "actors", "serve", "cli"]  # installed as chronos, chronos.actors, ...
EDGE_FRAMEWORKS = {"ray", "fastapi", "starlette", "typer", "uvicorn"}
# Imported directly but installed (and pinned) by a declared dependency of ours.
PROVIDED_BY = {
    "pydantic_core": "pydantic",
    "starlette": "fastapi",
    **dict.fromkeys(["multidict", "yarl", "async_timeout"], "aiohttp"),
}


def _imports(path: Path) -> set[str]:
    """Top-level names of every absolute import in a file, function-level ones included."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def _files(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {_normal(re.split(r"[\s\[<>=!~;]", spec, maxsplit=1)[0]) for spec in project["dependencies"]}


@pytest.mark.parametrize("path", _files("chronos"), ids=lambda p: str(p.relative_to(ROOT)))
def test_the_core_imports_no_edge_framework(path: Path):
    assert not (_imports(path) & EDGE_FRAMEWORKS), f"{path.name} imports {_imports(path) & EDGE_FRAMEWORKS}"


def test_every_runtime_import_is_a_declared_dependency():
    declared, distributions = _declared(), packages_distributions()
    local = {"chronos", *SHIPPED}
    missing = {}
    for folder in SHIPPED:
        for path in _files(folder):
            for name in _imports(path) - local - set(sys.stdlib_module_names):
                owner = PROVIDED_BY.get(name) or next(iter(distributions.get(name, [name])))
                if _normal(owner) not in declared:
                    missing.setdefault(name, []).append(str(path.relative_to(ROOT)))
    assert not missing, f"imported but not in [project] dependencies: {missing}"


# Only the modules that send HTTP requests import an HTTP client; the rest judge values.
SENDERS = {"dispatcher.py"}


@pytest.mark.parametrize("path", _files("chronos"), ids=lambda p: str(p.relative_to(ROOT)))
def test_only_senders_import_aiohttp(path: Path):
    assert path.name in SENDERS or "aiohttp" not in _imports(path)


def _modules(path: Path) -> set[str]:
    return {node.module for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.ImportFrom) and node.module}


def test_the_runtime_contract_imports_no_host():
    heavy = {"chronos.host", "chronos.runner", "chronos.dispatcher", "aiohttp"}
    assert not _modules(ROOT / "chronos" / "runtime.py") & heavy
