"""The documentation, read by the tests: code blocks of the guide's pages, the request bodies
of their curl commands, and the reference generator (``docs/hooks/reference.py``).

The tests that pin the guide's requests (``test_api.py``, ``test_e2e.py``) take them from the
pages themselves, so a page cannot show a request the tests do not send.
"""

from __future__ import annotations

import importlib.util
import re
from functools import lru_cache
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"

_FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```\s*$", re.S | re.M)
_CURL_BODY = re.compile(r"-d '(\{.*?\n  \})'", re.S)


def page(name: str) -> str:
    return (DOCS / name).read_text()


def code_blocks(name: str, language: str) -> list[str]:
    """The fenced code blocks of a page in ``language``, in order, as written."""
    return [body for lang, body in _FENCE.findall(page(name)) if lang == language]


def curl_body(name: str, job: str) -> str:
    """The ``-d '...'`` body, byte for byte as curl sends it, of the request on page ``name``
    that creates the job named ``job``."""
    bodies = [b for block in code_blocks(name, "bash") for b in _CURL_BODY.findall(block) if f'"name": "{job}"' in b]
    assert len(bodies) == 1, f"{name}: expected one curl request creating {job!r}, found {len(bodies)}"
    return bodies[0]


def heredoc(name: str, filename: str) -> str:
    """The text a ``cat > filename <<'EOF' ... EOF`` of page ``name`` writes."""
    pattern = re.compile(rf"cat > {re.escape(filename)} <<'EOF'\n(.*?\n)EOF\n", re.S)
    texts = [t for block in code_blocks(name, "bash") for t in pattern.findall(block)]
    assert len(texts) == 1, f"{name}: expected one heredoc writing {filename}, found {len(texts)}"
    return texts[0]


@lru_cache(maxsize=1)
def reference() -> ModuleType:
    """``docs/hooks/reference.py``, the MkDocs hook that generates the reference pages."""
    spec = importlib.util.spec_from_file_location("chronos_docs_reference", DOCS / "hooks" / "reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
