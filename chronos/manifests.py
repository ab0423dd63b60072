"""Job manifests: YAML (or JSON) documents that describe jobs, as ``chronosctl job
apply -f`` reads them and the web console's YAML editor takes them.

A manifest may be the output of ``chronosctl job get NAME -o yaml``: its read-only
fields (id, timestamps, last status) are ignored, and secrets that read ``***``
mean "keep the secret the server has" (only where the server stores one).
"""

from __future__ import annotations

import copy
import datetime as _dt
from typing import Any, Optional

import yaml

from chronos.errors import ValidationError
from chronos.models import REDACTED, JobCreate, parse_job, redact_spec

READ_ONLY_FIELDS = ("id", "created_at", "updated_at", "next_run", "last_run", "last_status", "anchor")


class InvalidManifest(ValidationError):
    """The text is not YAML or JSON at all (as opposed to an invalid job)."""


def parse_documents(source: str, text: str) -> list[Any]:
    """YAML (a superset of JSON) with any number of ``---`` documents; empty documents are
    skipped. A JSON array of jobs is accepted too."""
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        message = f"{source}: not valid YAML or JSON{where}: {problem}"
        raise InvalidManifest(message, [{"field": "yaml", "message": f"not valid YAML{where}: {problem}"}]) from None
    out: list[Any] = []
    for doc in docs:
        if isinstance(doc, list):
            out.extend(doc)
        else:
            out.append(doc)
    return out


def _stringify_dates(value: Any) -> Any:
    """YAML turns unquoted 2026-01-01 into a date; the model wants strings there."""
    if isinstance(value, dict):
        return {k: _stringify_dates(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_stringify_dates(v) for v in value]
    if isinstance(value, (_dt.date, _dt.datetime)):
        return value.isoformat()
    return value


def writable_fields(document: dict[str, Any]) -> dict[str, Any]:
    """The document as written, read-only fields removed (dates as text)."""
    return {k: v for k, v in _stringify_dates(document).items() if k not in READ_ONLY_FIELDS}


def parse_document(document: Any, *, egress: Any = None) -> JobCreate:
    """One manifest document as a validated spec, or :class:`ValidationError` naming each
    field (``egress``: the server's policy, see :func:`chronos.models.parse_job`)."""
    if not isinstance(document, dict):
        message = f"a job document is a mapping of fields, not {type(document).__name__}"
        raise ValidationError(message, [{"field": "body", "message": message}])
    return parse_job(writable_fields(document), egress=egress)


def redacted_paths(spec: dict[str, Any]) -> list[str]:
    """Dotted paths of the secrets in ``spec`` that read ``***``."""
    webhook = spec.get("webhook") or {}
    paths = [f"webhook.headers.{k}" for k, v in (webhook.get("headers") or {}).items() if v == REDACTED]
    auth = webhook.get("auth") or {}
    paths += [f"webhook.auth.{k}" for k in ("token", "password", "api_key") if auth.get(k) == REDACTED]
    signing = webhook.get("signing_secret")
    if REDACTED in (signing if isinstance(signing, list) else [signing]):
        paths.append("webhook.signing_secret")
    paths += [f"notify.{i}.url" for i, t in enumerate(spec.get("notify") or [])
              if isinstance(t, dict) and str(t.get("url", "")).endswith(f"/{REDACTED}")]
    return paths


def unkeepable_secrets(spec: JobCreate, stored: Optional[dict[str, Any]]) -> list[dict[str, str]]:
    """Field errors for secrets given as ``***`` where the server (``stored``, a job's public
    view, or None for a new job) keeps none: ``***`` only means "keep the stored secret"."""
    kept = {p.lower() for p in redacted_paths(stored)} if stored else set()
    return [
        {"field": p, "message": '"***" is a secret read back from the server: write the real value'}
        for p in redacted_paths(spec.model_dump(mode="json"))
        if p.lower() not in kept
    ]


def comparable(spec: dict[str, Any]) -> dict[str, Any]:
    """A job spec normalised for comparison: validated through the model (so "10s" and
    10 compare equal and defaults are filled in) with every secret read as ``***``,
    because the server never returns secrets."""
    fields = {k: v for k, v in spec.items() if k in JobCreate.model_fields}
    try:
        norm = parse_job(fields).model_dump(mode="json")
    except ValidationError:
        norm = copy.deepcopy(fields)
    return redact_spec(norm)


def changed_fields(stored: dict[str, Any], spec: JobCreate) -> list[str]:
    """Top-level fields where ``spec`` differs from a stored job (its public view); secrets
    are not compared (the server never shows them): ``chronosctl job apply``'s "unchanged"."""
    ours, theirs = comparable(spec.model_dump(mode="json")), comparable(stored)
    return [k for k in JobCreate.model_fields if ours.get(k) != theirs.get(k)]


def manifest_of(public: dict[str, Any]) -> dict[str, Any]:
    """A job's public view as a manifest: the writable fields, in the model's order."""
    return {k: public[k] for k in JobCreate.model_fields if k in public}


class _Dumper(yaml.SafeDumper):
    pass


def _str_representer(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style: Optional[str] = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str_representer)


def dump_yaml(value: Any) -> str:
    return yaml.dump(value, Dumper=_Dumper, sort_keys=False, allow_unicode=True, default_flow_style=False)


def dump_yaml_documents(values: list[Any]) -> str:
    return yaml.dump_all(values, Dumper=_Dumper, sort_keys=False, allow_unicode=True, default_flow_style=False)
