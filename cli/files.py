"""Reading job files (YAML or JSON, several ``---`` documents, ``-`` for stdin, a
directory of them) and validating each document with the same model as the API.

A file may be the output of ``chronosctl job get NAME -o yaml``: its read-only
fields (id, timestamps, last status) are ignored, and secrets that read ``***``
mean "keep the secret the server has".
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chronos.errors import ValidationError
from chronos.manifests import (
    InvalidManifest,
    changed_fields,
    dump_yaml,
    dump_yaml_documents,
    parse_documents,
    redacted_paths,
    unkeepable_secrets,
    writable_fields,
)
from chronos.models import JobCreate, parse_job

from chronos.cli.client import EXIT_USAGE, EXIT_VALIDATION, CliError

__all__ = ["JobDocument", "differences", "dump_json", "dump_yaml", "dump_yaml_documents", "load_documents", "redacted_paths"]

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

    def unkeepable_secrets(self, server_job: dict[str, Any] | None) -> list[dict[str, str]]:
        """Secrets the file gives as ``***`` that the server has none of to keep."""
        return unkeepable_secrets(self.spec, server_job)


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
    try:
        return parse_documents(source, text)
    except InvalidManifest as e:
        raise CliError("INVALID_FILE", e.message, exit_code=EXIT_VALIDATION) from None


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
            data = writable_fields(raw)
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


def differences(server_job: dict[str, Any], doc: JobDocument) -> list[str]:
    """Top-level spec fields where the file and the server differ (secrets ignored)."""
    return changed_fields(server_job, doc.spec)


def dump_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)
