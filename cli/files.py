"""Reading job files (YAML or JSON, several ``---`` documents, ``-`` for stdin, a
directory of them) and validating each document with the same model as the API.

A file may be the output of ``chronosctl job get NAME -o yaml``: its read-only
fields (id, timestamps, last status) are ignored, and secrets that read ``***``
mean "keep the secret the server has".
"""

from __future__ import annotations

import copy
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import yaml

from chronos.errors import ValidationError
from chronos.models import REDACTED, JobCreate, parse_job, redact_webhook

from chronos.cli.client import EXIT_USAGE, EXIT_VALIDATION, CliError

READ_ONLY_FIELDS = ("id", "created_at", "updated_at", "next_run", "last_run", "last_status", "anchor")
JOB_FILE_SUFFIXES = (".yaml", ".yml", ".json")


@dataclass
class JobDocument:
    source: str  # "daily-report.yaml", "daily-report.yaml (document 2)", "<stdin>"
    data: dict[str, Any]  # the document as written, read-only fields removed
    spec: JobCreate  # validated

    @property
    def name(self) -> str:
        return self.spec.name

    def body(self) -> dict[str, Any]:
        """The JSON body to send: the validated spec, normalised (durations as "10s")."""
        return self.spec.model_dump(mode="json")

    def redacted_secrets(self) -> list[str]:
        """Dotted paths of secrets the file gives as ``***``."""
        return redacted_paths(self.body())


def redacted_paths(spec: dict[str, Any]) -> list[str]:
    webhook = spec.get("webhook") or {}
    paths = [f"webhook.headers.{k}" for k, v in (webhook.get("headers") or {}).items() if v == REDACTED]
    auth = webhook.get("auth") or {}
    paths += [f"webhook.auth.{k}" for k in ("token", "password", "api_key") if auth.get(k) == REDACTED]
    return paths


def _read_text(path: str) -> tuple[str, str]:
    if path == "-":
        return "<stdin>", sys.stdin.read()
    p = Path(path)
    try:
        return str(path), p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CliError("FILE_NOT_FOUND", f"{path}: no such file", exit_code=EXIT_USAGE) from None
    except IsADirectoryError:
        raise CliError("USAGE", f"{path} is a directory: use `job apply -f DIR`", exit_code=EXIT_USAGE) from None
    except (OSError, UnicodeDecodeError) as e:
        raise CliError("FILE_ERROR", f"{path}: cannot read: {e}", exit_code=EXIT_USAGE) from None


def expand_paths(paths: list[str], allow_dirs: bool) -> list[str]:
    out: list[str] = []
    for path in paths:
        if path != "-" and Path(path).is_dir():
            if not allow_dirs:
                raise CliError("USAGE", f"{path} is a directory: use `job apply -f {path}`", exit_code=EXIT_USAGE)
            found = sorted(
                str(p) for p in Path(path).iterdir() if p.is_file() and p.suffix.lower() in JOB_FILE_SUFFIXES
            )
            if not found:
                raise CliError(
                    "USAGE", f"{path}: no job files (*.yaml, *.yml, *.json) in this directory", exit_code=EXIT_USAGE
                )
            out.extend(found)
        else:
            out.append(path)
    return out


def _parse_documents(source: str, text: str) -> list[Any]:
    """YAML (a superset of JSON) with any number of ``---`` documents; empty documents are skipped.
    A JSON array of jobs is accepted too."""
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        raise CliError("INVALID_FILE", f"{source}: not valid YAML or JSON{where}: {problem}", exit_code=EXIT_VALIDATION) from None
    out: list[Any] = []
    for doc in docs:
        if isinstance(doc, list):
            out.extend(doc)
        else:
            out.append(doc)
    return out


def _stringify_dates(value: Any) -> Any:
    """YAML turns unquoted 2026-01-01 into a date; the model wants strings there."""
    import datetime as _dt

    if isinstance(value, dict):
        return {k: _stringify_dates(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_stringify_dates(v) for v in value]
    if isinstance(value, (_dt.date, _dt.datetime)):
        return value.isoformat()
    return value


def load_documents(paths: list[str], allow_dirs: bool = False) -> list[JobDocument]:
    """Read and validate every job document; raise one :class:`CliError` (exit 6) that
    lists the field errors of every invalid document, before anything is sent."""
    files = expand_paths(paths, allow_dirs)
    if sum(1 for p in files if p == "-") > 1:
        raise CliError("USAGE", "stdin (-f -) can be read only once", exit_code=EXIT_USAGE)
    documents: list[JobDocument] = []
    errors: list[dict[str, Any]] = []
    invalid: list[str] = []
    for path in files:
        source, text = _read_text(path)
        raw_docs = _parse_documents(source, text)
        if not raw_docs:
            raise CliError("INVALID_FILE", f"{source}: holds no job document", exit_code=EXIT_VALIDATION)
        for index, raw in enumerate(raw_docs, start=1):
            label = source if len(raw_docs) == 1 else f"{source} (document {index})"
            if not isinstance(raw, dict):
                invalid.append(label)
                errors.append({"field": label, "message": f"a job document is a mapping of fields, not {type(raw).__name__}"})
                continue
            data = {k: v for k, v in _stringify_dates(raw).items() if k not in READ_ONLY_FIELDS}
            try:
                spec = parse_job(data)
            except ValidationError as e:
                invalid.append(label)
                prefix = f"{label}: " if len(files) > 1 or len(raw_docs) > 1 else ""
                for err in e.errors or [{"field": "body", "message": e.message}]:
                    errors.append({"field": prefix + str(err.get("field", "body")), "message": str(err.get("message", ""))})
                continue
            documents.append(JobDocument(source=label, data=data, spec=spec))
    if invalid:
        what = invalid[0] if len(invalid) == 1 else f"{len(invalid)} documents"
        raise CliError(
            "VALIDATION_ERROR", f"{what} is not a valid job; nothing was sent", exit_code=EXIT_VALIDATION, errors=errors
        )
    seen: dict[str, str] = {}
    for doc in documents:
        if doc.name in seen:
            raise CliError(
                "VALIDATION_ERROR",
                f'job "{doc.name}" is defined twice: in {seen[doc.name]} and in {doc.source}',
                exit_code=EXIT_VALIDATION,
            )
        seen[doc.name] = doc.source
    return documents


def comparable(spec: dict[str, Any]) -> dict[str, Any]:
    """A job spec normalised for comparison: validated through the model (so "10s" and
    10 compare equal and defaults are filled in) with every secret read as ``***``,
    because the server never returns secrets."""
    fields = {k: v for k, v in spec.items() if k in JobCreate.model_fields}
    try:
        norm = parse_job(fields).model_dump(mode="json")
    except ValidationError:
        norm = copy.deepcopy(fields)
    if isinstance(norm.get("webhook"), dict):
        redact_webhook(norm["webhook"])
    return norm


def differences(server_job: dict[str, Any], doc: JobDocument) -> list[str]:
    """Top-level spec fields where the file and the server differ (secrets ignored)."""
    ours = comparable(doc.body())
    theirs = comparable(server_job)
    return [k for k in JobCreate.model_fields if ours.get(k) != theirs.get(k)]


def dump_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)


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
