"""MkDocs hook: the reference pages, generated from the code at every build.

* ``reference/api.md``      from the app's OpenAPI document (``create_app`` over no backend)
* ``reference/cli.md``      from the Typer apps of ``chronosctl`` and ``chronos``
* ``reference/settings.md`` from ``chronos.settings.Settings``
* ``reference/metrics.md``  from the Prometheus registries of ``chronos.metrics`` and ``chronos.serve.metrics``

Nothing here starts Ray, a server or a network connection: the app is built
in-process over a backend it never calls, and the registries are created empty.
``tests/test_docs.py`` imports this file and compares each page with the code.
"""

from __future__ import annotations

import inspect
import json
import re
import textwrap
from typing import Any, Iterable

PAGES = {
    "reference/api.md": "api_markdown",
    "reference/cli.md": "cli_markdown",
    "reference/settings.md": "settings_markdown",
    "reference/metrics.md": "metrics_markdown",
}

GENERATED = "<!-- Generated from the code by docs/hooks/reference.py at build time: edit the code, not this page. -->\n\n"


# ---------------------------------------------------------------- mkdocs entry points


def on_files(files: Any, config: Any) -> Any:
    from mkdocs.structure.files import File

    for path, builder in PAGES.items():
        existing = files.get_file_from_path(path)
        if existing is not None:
            files.remove(existing)
        files.append(File.generated(config, path, content=globals()[builder]()))
    return files


# ---------------------------------------------------------------- helpers


_CODE_SPAN = re.compile(r"(`+)(?:.+?)\1")


def cell(text: Any) -> str:
    """Text made safe for one Markdown table cell: on one line, and every ``|`` outside a code
    span escaped (inside one, Python-Markdown's tables never split, and would show a backslash)."""
    if text is None:
        return ""
    text = " ".join(str(text).split())
    out, last = [], 0
    for span in _CODE_SPAN.finditer(text):
        out.append(re.sub(r"(?<!\\)\|", r"\\|", text[last : span.start()]))
        out.append(span.group(0))
        last = span.end()
    out.append(re.sub(r"(?<!\\)\|", r"\\|", text[last:]))
    return "".join(out)


def code(text: Any) -> str:
    text = str(text)
    fence = "``" if "`" in text else "`"
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def table(header: Iterable[str], rows: Iterable[Iterable[Any]]) -> str:
    header = list(header)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def anchor(text: str) -> str:
    """A readable heading id: ``GET /api/v1/jobs/{ref}`` -> ``get-api-v1-jobs-ref``."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


# ---------------------------------------------------------------- REST API


def openapi_document() -> dict[str, Any]:
    from chronos.serve.app import create_app
    from chronos.settings import Settings

    # Documented as a server with API tokens shows it (which operations need one);
    # every field the app reads is given, so no CHRONOS_* variable or chronos.yaml leaks in.
    settings = Settings(api_tokens=["documentation"], open_metrics=True)
    app = create_app(backend=None, settings=settings)  # type: ignore[arg-type]  # built, never called
    return app.openapi()


HTTP_METHODS = ("get", "put", "post", "patch", "delete", "head", "options")


def operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    out = []
    for path, item in doc.get("paths", {}).items():
        for method in HTTP_METHODS:
            if method in item:
                out.append((method.upper(), path, item[method]))
    return out


def schema_type(schema: dict[str, Any]) -> str:
    """A short, readable type for a JSON schema."""
    if not schema:
        return "any"
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return f"[{name}](#{anchor('schema ' + name)})"
    for key in ("anyOf", "oneOf"):
        if key in schema:
            parts = [p for p in schema[key] if p.get("type") != "null"]
            names = []
            for p in parts:
                t = schema_type(p)
                if t not in names:
                    names.append(t)
            text = " or ".join(names) or "null"
            if len(parts) < len(schema[key]):
                text += " or null"
            return text
    if "allOf" in schema and len(schema["allOf"]) == 1:
        return schema_type(schema["allOf"][0])
    if "enum" in schema:
        return " \\| ".join(code(v) for v in schema["enum"])
    if "const" in schema:
        return code(json.dumps(schema["const"]))
    kind = schema.get("type", "any")
    if kind == "array":
        return f"array of {schema_type(schema.get('items', {}))}"
    if kind == "object" and isinstance(schema.get("additionalProperties"), dict):
        return f"map of {schema_type(schema['additionalProperties'])}"
    if isinstance(kind, list):
        return " or ".join(kind)
    return kind + (f" ({schema['format']})" if "format" in schema else "")


def constraints(schema: dict[str, Any]) -> str:
    words = []
    for key, label in (
        ("minLength", "min length"),
        ("maxLength", "max length"),
        ("minimum", "≥"),
        ("exclusiveMinimum", ">"),
        ("maximum", "≤"),
        ("exclusiveMaximum", "<"),
        ("minItems", "min items"),
        ("maxItems", "max items"),
        ("pattern", "pattern"),
    ):
        if key in schema:
            value = schema[key]
            words.append(f"{label} {code(value) if key == 'pattern' else value}")
    for sub in schema.get("anyOf", []):
        if sub.get("type") != "null":
            extra = constraints(sub)
            if extra:
                words.append(extra)
    return ", ".join(words)


def api_markdown() -> str:
    doc = openapi_document()
    out = [
        "# REST API reference\n\n",
        GENERATED,
        f"{doc['info']['title']} {doc['info']['version']}. The same document is served by every "
        "server at `/openapi.json`, browsable at `/docs`. Every error is an RFC 9457 problem "
        "(`application/problem+json`, schema [ProblemDetails](#schema-problemdetails)) with a stable `code`.\n\n",
        "## Operations\n\n",
    ]
    ops = operations(doc)
    out.append(
        table(
            ["method", "path", "what"],
            [(code(m), code(p), f"[{cell(op.get('summary', ''))}](#{anchor(m + ' ' + p)})") for m, p, op in ops],
        )
    )
    out.append("\n")
    for method, path, op in ops:
        out.append(f"### {code(method)} {code(path)} {{ #{anchor(method + ' ' + path)} }}\n\n")
        summary = op.get("summary")
        if summary:
            out.append(f"**{summary}.**" if not summary.endswith(".") else f"**{summary}**")
            out.append(" ")
        if op.get("description"):
            out.append(op["description"].strip())
        out.append("\n\n")
        if op.get("tags"):
            out.append("Tag: " + ", ".join(code(t) for t in op["tags"]) + ". ")
        if op.get("security"):
            out.append("Needs a bearer token when the server has `CHRONOS_API_TOKENS`.\n\n")
        else:
            unless = " (unless `CHRONOS_OPEN_METRICS=false`)" if path in ("/health", "/ready", "/metrics") else ""
            out.append(f"Open: never needs a token{unless}.\n\n")
        params = op.get("parameters", [])
        if params:
            out.append(
                table(
                    ["parameter", "in", "type", "required", "description"],
                    [
                        (
                            code(p["name"]),
                            p["in"],
                            cell(schema_type(p.get("schema", {}))),
                            "yes" if p.get("required") else "no",
                            cell(
                                " ".join(
                                    s
                                    for s in (
                                        p.get("description") or p.get("schema", {}).get("description", ""),
                                        (
                                            f"Default {code(json.dumps(p['schema']['default']))}."
                                            if "default" in p.get("schema", {})
                                            else ""
                                        ),
                                        constraints(p.get("schema", {})),
                                    )
                                    if s
                                )
                            ),
                        )
                        for p in params
                    ],
                )
            )
            out.append("\n")
        body = op.get("requestBody")
        if body:
            for media, content in body.get("content", {}).items():
                out.append(f"Request body ({code(media)}): {schema_type(content.get('schema', {}))}.\n\n")
                for name, example in (content.get("examples") or {}).items():
                    title = example.get("summary", name)
                    out.append(f"Example, {cell(title)}:\n\n```json\n{json.dumps(example['value'], indent=2)}\n```\n\n")
        responses = []
        for status, response in op.get("responses", {}).items():
            kinds = [
                f"{code(media)} {schema_type(c.get('schema', {}))}" if c.get("schema") else code(media)
                for media, c in (response.get("content") or {}).items()
            ]
            responses.append((code(status), cell(response.get("description", "")), cell(", ".join(kinds))))
        out.append(table(["status", "meaning", "body"], responses))
        out.append("\n")

    out.append("## Schemas\n\n")
    for name, schema in sorted(doc.get("components", {}).get("schemas", {}).items()):
        out.append(f"### {name} {{ #{anchor('schema ' + name)} }}\n\n")
        if schema.get("description"):
            out.append(" ".join(schema["description"].split()) + "\n\n")
        if "enum" in schema:
            out.append("One of " + ", ".join(code(v) for v in schema["enum"]) + ".\n\n")
            continue
        props = schema.get("properties", {})
        if not props:
            out.append(f"Type: {schema_type(schema)}.\n\n")
            continue
        required = set(schema.get("required", []))
        rows = []
        for field, prop in props.items():
            default = prop["default"] if "default" in prop else None
            rows.append(
                (
                    code(field),
                    cell(schema_type(prop)),
                    "yes" if field in required else "no",
                    code(json.dumps(default)) if "default" in prop else "",
                    cell(" ".join(s for s in (prop.get("description", ""), constraints(prop)) if s)),
                )
            )
        out.append(table(["field", "type", "required", "default", "description"], rows))
        if schema.get("additionalProperties") is False:
            out.append("\nUnknown fields are rejected.\n")
        out.append("\n")
    return "".join(out)


# ---------------------------------------------------------------- CLI


def cli_apps() -> list[tuple[str, Any]]:
    """(program name, click command) of each command-line program."""
    import typer.main

    from chronos.cli.main import app as ctl
    from chronos.serve.main import app as server

    return [("chronosctl", typer.main.get_command(ctl)), ("chronos", typer.main.get_command(server))]


def cli_commands(name: str, command: Any, parents: tuple[str, ...] = ()) -> list[tuple[str, Any]]:
    """Every command below a program, as ("chronosctl job create", command), groups included, in order."""
    path = (*parents, name)
    out = [(" ".join(path), command)]
    for sub_name, sub in (getattr(command, "commands", None) or {}).items():
        if getattr(sub, "hidden", False):
            continue
        out += cli_commands(sub_name, sub, path)
    return out


def _param_names(param: Any) -> str:
    names = list(param.opts) + list(getattr(param, "secondary_opts", []))
    return ", ".join(code(n) for n in names)


def _param_default(param: Any) -> str:
    if getattr(param, "is_flag", False) and param.default in (False, None) and not param.secondary_opts:
        return ""
    default = param.default
    if callable(default) or default is None or default == [] or default == ():
        return ""
    if hasattr(default, "value"):  # an Enum
        default = default.value
    if isinstance(default, bool) and param.secondary_opts:
        return code(param.opts[0] if default else param.secondary_opts[0])
    return code(default)


def _param_type(param: Any) -> str:
    """The kind of value an option takes, from its Python annotation (Typer) or its click type."""
    import enum
    import typing
    from pathlib import Path

    if getattr(param, "is_flag", False):
        return "flag"
    descriptor = getattr(param, "type_descriptor", None)  # Typer >= 0.29 (its own click)
    annotation = getattr(descriptor, "annotation", None)
    if annotation is None:  # older Typer, on click: the click type says it
        kind = param.type
        choices = getattr(kind, "choices", None)
        if choices:
            return " \\| ".join(code(getattr(c, "value", c)) for c in choices)
        return getattr(kind, "name", str(kind)).lower().replace("integer range", "integer")
    repeatable = typing.get_origin(annotation) in (list, tuple)
    if repeatable:
        annotation = typing.get_args(annotation)[0]
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) is typing.Union and len(args) == 1:
        annotation = args[0]
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        text = " \\| ".join(code(m.value) for m in annotation)
    else:
        text = {str: "text", int: "integer", float: "number", bool: "bool", Path: "path"}.get(annotation, "text")
    low, high = getattr(param, "min", None), getattr(param, "max", None)
    if low is not None or high is not None:
        text += f" ({low if low is not None else ''}–{high if high is not None else ''})"
    return text + (", repeatable" if repeatable else "")


def _help_text(command: Any) -> str:
    text = inspect.cleandoc(command.help or "")
    # Typer's \b markers and the overview's "Examples:" block read as-is in a code block below.
    return text.replace("\b\n", "")


def cli_markdown() -> str:
    from chronos.cli.client import EXIT_CODES

    out = [
        "# Command-line reference\n\n",
        GENERATED,
        "Two programs: `chronosctl`, the client of the REST API, and `chronos`, the server. "
        "Every `chronosctl` command also takes the global options of `chronosctl` itself, before the command "
        "(`chronosctl -o yaml job get daily-report`); most take `-o/--output` after it too.\n\n",
        "## Exit codes of `chronosctl`\n\n",
        table(["code", "meaning"], [(code(n), cell(text)) for n, text in sorted(EXIT_CODES.items())]),
        "\nErrors print `Error: CODE: message`, then one line per offending field.\n\n",
    ]
    for program, root in cli_apps():
        for path, command in cli_commands(program, root):
            depth = path.count(" ")
            out.append(f"{'#' * min(2 + depth, 4)} `{path}` {{ #{anchor(path)} }}\n\n")
            help_text = _help_text(command)
            if help_text:
                first, _, rest = help_text.partition("\n\n")
                out.append(" ".join(first.split()) + "\n\n")
                if rest.strip():
                    out.append("```text\n" + textwrap.dedent(rest).strip() + "\n```\n\n")
            subcommands = [n for n, c in (getattr(command, "commands", None) or {}).items() if not getattr(c, "hidden", False)]
            if subcommands:
                out.append(
                    "Commands: " + ", ".join(f"[`{n}`](#{anchor(path + ' ' + n)})" for n in subcommands) + ".\n\n"
                )
            ctx = command.context_class(command, info_name=path)
            usage = " ".join(command.collect_usage_pieces(ctx))
            out.append(f"```text\n{path} {usage}\n```\n\n")
            rows = []
            for param in command.params:
                if getattr(param, "hidden", False):
                    continue
                if param.param_type_name == "argument":
                    rows.append(
                        (
                            code(getattr(param, "metavar", None) or param.name.upper()),
                            "argument",
                            "yes" if param.required else "no",
                            "",
                            "",
                            cell(getattr(param, "help", None) or ""),
                        )
                    )
                    continue
                envvar = param.envvar
                if isinstance(envvar, (list, tuple)):
                    envvar = ", ".join(envvar)
                rows.append(
                    (
                        _param_names(param),
                        cell(_param_type(param)),
                        "yes" if param.required else "no",
                        _param_default(param),
                        code(envvar) if envvar else "",
                        cell(param.help or ""),
                    )
                )
            help_names = ", ".join(code(n) for n in root.context_settings.get("help_option_names", ["--help"]))
            rows.append((help_names, "flag", "no", "", "", "Show the help and exit."))
            out.append(table(["option", "type", "required", "default", "environment", "description"], rows))
            out.append("\n")
    return "".join(out)


# ---------------------------------------------------------------- settings


def _setting_type(field: Any) -> str:
    import typing
    from datetime import timedelta
    from pathlib import Path

    from pydantic import SecretStr

    annotation = field.annotation
    args = typing.get_args(annotation)
    origin = typing.get_origin(annotation)
    optional = type(None) in args
    if optional:
        (annotation,) = [a for a in args if a is not type(None)]
        origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Literal:
        text = " \\| ".join(code(a) for a in args)
    elif origin is list:
        # NoDecode: our validator splits the text on commas; otherwise pydantic-settings reads JSON.
        from pydantic_settings import NoDecode

        if any(m is NoDecode or isinstance(m, NoDecode) for m in field.metadata):
            text = "comma-separated list"
        else:
            (item,) = typing.get_args(annotation) or (Any,)
            text = f"JSON list of `{getattr(item, '__name__', item)}`"
    elif annotation is timedelta:
        text = 'duration (`"30d"`, `"1h"`, seconds)'
    elif annotation is bool:
        text = "boolean"
    elif annotation is int:
        text = "integer"
    elif annotation is Path:
        text = "path"
    elif annotation is SecretStr:
        text = "secret"
    elif annotation is str:
        text = "string"
    else:
        text = getattr(annotation, "__name__", str(annotation))
    bounds = []
    for item in field.metadata:
        for attr, label in (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<")):
            if getattr(item, attr, None) is not None:
                bounds.append(f"{label} {getattr(item, attr)}")
    if bounds:
        text += " (" + ", ".join(bounds) + ")"
    return text + (", optional" if optional else "")


def _setting_default(field: Any) -> str:
    from datetime import timedelta
    from enum import Enum

    from pydantic_core import PydanticUndefined

    from chronos.durations import format_duration

    if field.default_factory is not None:
        value = field.default_factory()
        if value in ([], {}, ()):
            return "empty"
        return "computed at start (see description)"
    default = field.default
    if default is PydanticUndefined:
        return "required"
    if default is None:
        return "unset"
    if isinstance(default, timedelta):
        return code(format_duration(default))
    if isinstance(default, Enum):
        return code(default.value)
    if isinstance(default, bool):
        return code(str(default).lower())
    return code(default)


def settings_rows() -> list[tuple[str, str, Any]]:
    """(environment variable, field name, field) of every setting."""
    from chronos.settings import Settings

    prefix = Settings.model_config.get("env_prefix", "")
    return [(f"{prefix}{name}".upper(), name, field) for name, field in Settings.model_fields.items()]


def settings_markdown() -> str:
    rows = []
    for env, name, field in settings_rows():
        rows.append((code(env), code(name), cell(_setting_type(field)), _setting_default(field), cell(field.description or "")))
    return "".join(
        [
            "# Settings reference\n\n",
            GENERATED,
            "The server reads its settings once, at start, from (highest first) the command line of "
            "`chronos serve`, `CHRONOS_*` environment variables, then a YAML file (`chronos.yaml` in the "
            "working directory, or the path in `CHRONOS_CONFIG`) whose keys are the names in the second "
            "column. In the environment a list is written as its type says (comma-separated, or JSON); "
            "in the file it is a YAML list. "
            "`chronosctl` reads only `CHRONOS_SERVER` and `CHRONOS_TOKEN` (see the "
            "[command-line reference](cli.md)).\n\n",
            table(["environment variable", "chronos.yaml key", "type", "default", "description"], rows),
        ]
    )


# ---------------------------------------------------------------- metrics


def metric_registries(**options: Any) -> list[tuple[str, Any]]:
    """(where it comes from, registry) of every registry ``/metrics`` exposes; ``options``
    are passed to the cluster-wide registry where it takes them (``job_labels``)."""
    from chronos.metrics import Metrics
    from chronos.serve.metrics import ApiMetrics

    accepted = inspect.signature(Metrics).parameters
    return [
        ("cluster-wide (the supervisor)", Metrics(**{k: v for k, v in options.items() if k in accepted}).registry),
        ("per API replica", ApiMetrics().registry),
    ]


def metric_families(registry: Any) -> list[dict[str, Any]]:
    """Each family a registry exposes: exposed name, type, help, label names."""
    out = []
    collectors = list(dict.fromkeys(getattr(registry, "_collector_to_names", {}) or []))
    for collector in collectors:
        label_names = tuple(getattr(collector, "_labelnames", ()) or ())
        for family in collector.collect():
            labels = list(label_names)
            for sample in family.samples:
                for label in sample.labels:
                    if label not in labels and label not in ("le", "quantile"):
                        labels.append(label)
            name = family.name + ("_total" if family.type == "counter" else "")
            out.append({"name": name, "type": family.type, "help": family.documentation, "labels": labels})
    return out


def metrics_markdown() -> str:
    out = [
        "# Metrics reference\n\n",
        GENERATED,
        "Every server exposes these at `GET /metrics` in the Prometheus text format. By default no "
        "label takes unbounded values (never a job name); the last column lists the labels that "
        "`CHRONOS_METRICS_JOB_LABELS=true` adds. Histograms also expose `<name>_bucket{le}`, "
        "`<name>_sum` and `<name>_count`.\n\n",
    ]
    with_job_labels = {
        f["name"]: f["labels"] for _, registry in metric_registries(job_labels=True) for f in metric_families(registry)
    }
    for origin, registry in metric_registries():
        out.append(f"## {origin[0].upper() + origin[1:]}\n\n")
        rows = []
        for f in metric_families(registry):
            extra = [label for label in with_job_labels.get(f["name"], []) if label not in f["labels"]]
            rows.append(
                (
                    code(f["name"]),
                    f["type"],
                    ", ".join(code(label) for label in f["labels"]),
                    ", ".join(code(label) for label in extra),
                    cell(f["help"]),
                )
            )
        out.append(table(["name", "type", "labels", "with per-job labels, also", "description"], rows))
        out.append("\n")
    return "".join(out)
