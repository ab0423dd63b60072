"""``chronosctl``: the command line of Chronos, over its REST API.

    chronosctl [--server URL] [--token T] [-o table|json|yaml] COMMAND
      job        list | get | create | apply | update | delete | enable | disable | trigger
      execution  list | get | cancel
      schedule   validate

Exit codes: 0 ok, 1 other error, 2 usage, 3 not found, 4 server unreachable,
5 authentication, 6 validation.
"""

from __future__ import annotations

import os
import select
import sys
from dataclasses import dataclass, field
from typing import Any, Optional

import typer
import yaml
from typer.core import TyperGroup

from chronos import __version__
from chronos.errors import ValidationError
from chronos.models import MAX_SIGNING_SECRETS, Concurrency, ExecutionStatus, JobCreate, Method, merge_patch, parse_job
from chronos.signing import GENERATE, generate_secret

from chronos.cli.client import (
    EXIT_ERROR,
    EXIT_USAGE,
    EXIT_VALIDATION,
    ChronosClient,
    CliError,
)
from chronos.cli.files import JobDocument, differences, load_documents
from chronos.cli.output import (
    Format,
    emit_data,
    notice,
    print_error,
    print_execution,
    print_executions,
    print_job,
    print_jobs,
    print_schedule,
    success,
    when,
)

DEFAULT_SERVER = "http://localhost:8080"


class ChronosGroup(TyperGroup):
    """The root command: turns every error into ``Error: CODE: message`` and an exit code,
    so no Python traceback ever reaches the user."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except CliError as e:
            print_error(e)
            raise typer.Exit(e.exit_code) from None
        except (typer.Exit, typer.Abort, typer.TyperException, KeyboardInterrupt, EOFError):
            raise
        except BrokenPipeError:
            # `chronosctl job list | head`: stop quietly.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            raise typer.Exit(EXIT_ERROR) from None
        except Exception as e:  # a bug: still no traceback, but say what happened
            print_error(
                CliError(
                    "INTERNAL_ERROR",
                    f"{type(e).__name__}: {e}",
                    hint="this is a bug in chronosctl; please report it with the command you ran",
                )
            )
            raise typer.Exit(EXIT_ERROR) from None


CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}

app = typer.Typer(
    name="chronosctl",
    cls=ChronosGroup,
    help="""Manage Chronos webhook jobs from the command line.

Chronos calls HTTP webhooks on cron or interval schedules, with retries, timeouts and execution history.
chronosctl talks to its REST API (default http://localhost:8080).

Examples:
  chronosctl job create -f daily-report.yaml
  chronosctl job list
  chronosctl job get daily-report -o yaml
  chronosctl execution list daily-report --limit 10
  chronosctl --server http://chronos.internal:8080 job apply -f jobs/
  chronosctl schedule validate "0 9 * * 1-5" --timezone America/Los_Angeles

Exit codes: 0 ok, 1 other error, 2 usage error, 3 not found, 4 server unreachable, 5 authentication failed, 6 validation failed.""",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings=CONTEXT,
)
job_app = typer.Typer(
    help="""Create, inspect, change and run jobs.

A job calls one webhook on a schedule. Every command takes the job's name (or its id).""",
    no_args_is_help=True,
    context_settings=CONTEXT,
)
execution_app = typer.Typer(
    help="""Inspect and cancel the executions (runs) of a job.""",
    no_args_is_help=True,
    context_settings=CONTEXT,
)
schedule_app = typer.Typer(
    help="""Check schedule expressions before you use them.""",
    no_args_is_help=True,
    context_settings=CONTEXT,
)
app.add_typer(job_app, name="job")
app.add_typer(execution_app, name="execution")
app.add_typer(schedule_app, name="schedule")


# ---------------------------------------------------------------- global state


@dataclass
class State:
    server: str = DEFAULT_SERVER
    token: Optional[str] = None
    output: Format = Format.table
    _client: Optional[ChronosClient] = field(default=None, repr=False)

    def client(self) -> ChronosClient:
        if self._client is None:
            self._client = ChronosClient(self.server, self.token)
        return self._client


def _state(ctx: typer.Context) -> State:
    root = ctx.find_root()
    if not isinstance(root.obj, State):
        root.obj = State()
    return root.obj


def _fmt(ctx: typer.Context, output: Optional[Format]) -> Format:
    return output or _state(ctx).output


def _version(value: bool) -> None:
    if value:
        typer.echo(f"chronosctl {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    ctx: typer.Context,
    server: str = typer.Option(
        DEFAULT_SERVER,
        "--server",
        "-s",
        envvar="CHRONOS_SERVER",
        show_envvar=True,
        help="URL of the Chronos server.",
    ),
    output: Format = typer.Option(
        Format.table, "--output", "-o", help="Output format: tables for people, the API's objects as json or yaml."
    ),
    token: Optional[str] = typer.Option(
        None,
        "--token",
        envvar="CHRONOS_TOKEN",
        show_envvar=True,
        show_default=False,
        help="API token, sent as 'Authorization: Bearer'.",
    ),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the chronosctl version and exit."
    ),
) -> None:
    state = State(server=server, token=token or None, output=output)
    ctx.obj = state
    ctx.call_on_close(lambda: state._client.close() if state._client else None)


OutputOption = typer.Option(
    None, "--output", "-o", help="Output format (overrides the global -o): table, json or yaml.", show_default=False
)


# ---------------------------------------------------------------- helpers


def _key_values(values: list[str], option: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f'"{item}" is not KEY=VALUE', param_hint=option)
        out[key] = value
    return out


def _stdin_has_answer(timeout: float = 1.0) -> bool:
    """Whether a confirmation can be read without hanging: true on a terminal and on
    piped input (``echo y | chronosctl ...``); false when stdin is closed, or is a pipe
    nobody writes to."""
    stream = sys.stdin
    if stream is None:
        return False
    try:
        if stream.isatty():
            return True
        fd = stream.fileno()
    except (AttributeError, ValueError, OSError):
        return True  # an in-memory stream (tests): reading it cannot block
    try:
        readable, _, _ = select.select([fd], [], [], timeout)
    except (OSError, ValueError):
        return True
    return bool(readable)


def _confirm(question: str) -> bool:
    """Ask yes/no. Without a terminal or an answer on stdin, refuse with a usage error
    (exit 2) instead of hanging: pass --yes in scripts."""
    if not _stdin_has_answer():
        raise CliError(
            "CONFIRMATION_REQUIRED",
            f"{question.rstrip('?')}: no answer on stdin (not a terminal); pass --yes to confirm",
            exit_code=EXIT_USAGE,
        )
    try:
        return typer.confirm(question, default=False)
    except typer.Abort:
        if sys.stdin is not None and sys.stdin.isatty():
            raise  # Ctrl-C / Ctrl-D at the prompt: "Aborted!"
        raise CliError(
            "CONFIRMATION_REQUIRED",
            f"{question.rstrip('?')}: no answer on stdin; pass --yes to confirm",
            exit_code=EXIT_USAGE,
        ) from None


def _print_one(job: dict[str, Any], fmt: Format) -> None:
    if fmt is Format.table:
        print_job(job)
    else:
        emit_data(job, fmt)


def _next_run_note(job: dict[str, Any]) -> str:
    if not job.get("enabled", True):
        return "disabled"
    if job.get("next_run"):
        return f"next run {when(job['next_run'], job.get('timezone'))}"
    return "no next run"


def _field_errors(e: ValidationError) -> list[dict[str, Any]]:
    return [{"field": err.get("field", "body"), "message": err.get("message", "")} for err in e.errors] or [
        {"field": "body", "message": e.message}
    ]


def _check_no_redacted_secrets(doc: JobDocument, server_job: Optional[dict[str, Any]]) -> None:
    """``***`` in a file means "keep the stored secret": only meaningful when the server
    already stores a secret at that place."""
    errors = doc.unkeepable_secrets(server_job)
    if errors:
        raise CliError(
            "VALIDATION_ERROR",
            f'{doc.source}: job "{doc.name}" has secrets that read "***" but the server stores none to keep',
            exit_code=EXIT_VALIDATION,
            errors=errors,
        )


def _told(doc: JobDocument, telling: Telling) -> tuple[dict[str, Any], Optional[str]]:
    """A document's body with the --notify/--signing-secret options, validated here (nothing is
    sent if one is invalid), and the secret generated for it."""
    body = telling.apply(doc.body())
    try:
        parse_job(body)
    except ValidationError as e:
        raise CliError(e.code, f'{doc.source}: job "{doc.name}" would not be valid; nothing was sent',
                       exit_code=EXIT_VALIDATION, errors=_field_errors(e)) from None
    return body, telling.generated


# ---------------------------------------------------------------- job commands


@job_app.command("list")
def job_list(
    ctx: typer.Context,
    tag: list[str] = typer.Option([], "--tag", "-t", metavar="KEY=VALUE", help="Only jobs with this tag (repeatable)."),
    enabled: Optional[bool] = typer.Option(
        None, "--enabled/--disabled", help="Only enabled, or only disabled, jobs.", show_default=False
    ),
    search: Optional[str] = typer.Option(None, "--search", help="Only jobs whose name or description contains this."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Show at most this many jobs (default: all)."),
    output: Optional[Format] = OutputOption,
) -> None:
    """List jobs, with their schedule, next run and last status.

    Without --limit every job is listed (all pages are fetched). Filters combine: a job must match all of them.

    Examples:
      chronosctl job list
      chronosctl job list --tag team=backend --tag environment=production
      chronosctl job list --disabled --search report
      chronosctl job list -o json
    """
    fmt = _fmt(ctx, output)
    jobs = _state(ctx).client().list_jobs(enabled=enabled, tags=_key_values(tag, "--tag"), search=search, limit=limit)
    if fmt is Format.table:
        print_jobs(jobs)
    else:
        emit_data(jobs, fmt)


@job_app.command("get")
def job_get(
    ctx: typer.Context,
    name: str = typer.Argument(..., metavar="NAME", help="Job name or id."),
    output: Optional[Format] = OutputOption,
) -> None:
    """Show one job. Secrets read back as "***".

    The YAML output can be edited and given back to `job apply -f`.

    Examples:
      chronosctl job get daily-report
      chronosctl job get daily-report -o yaml > daily-report.yaml
    """
    _print_one(_state(ctx).client().get_job(name), _fmt(ctx, output))


FileOption = typer.Option(
    ...,
    "--filename",
    "-f",
    metavar="FILE",
    help="Job file (YAML or JSON, several '---' documents allowed), a directory of them, or - for stdin. Repeatable.",
    show_default=False,
)

NotifyOption = typer.Option(
    [], "--notify", metavar="URL", help="Tell this URL when the job fails or recovers (repeatable; replaces the job's targets)."
)
NotifyOnOption = typer.Option(
    None, "--notify-on", metavar="EVENTS",
    help="What --notify targets hear, comma-separated: failed, timeout, missed, recovered, succeeded "
    "[default: failed,timeout,missed,recovered]. With update alone: changes the job's current targets.",
)
NotifyFormatOption = typer.Option(None, "--notify-format", help="json (default) or slack (an incoming-webhook message).")
SigningSecretOption = typer.Option(
    None, "--signing-secret", metavar="generate|whsec_...",
    help='Sign every request (Standard Webhooks); "generate" makes a secret and shows it once.',
)


@dataclass
class Telling:
    """The notification and signing options of job create/update, as fields of a job spec."""

    notify: list[str]
    notify_on: Optional[str]
    notify_format: Optional[str]
    signing_secret: Optional[str]
    generated: Optional[str] = None  # the secret made for "generate", to show once

    @property
    def wanted(self) -> bool:
        return bool(self.notify) or any(v is not None for v in (self.notify_on, self.notify_format, self.signing_secret))

    def targets(self, current: Optional[list[dict[str, Any]]] = None) -> Optional[list[dict[str, Any]]]:
        """The ``notify`` field to send, or None to leave it alone. Without --notify, --notify-on
        and --notify-format change the ``current`` targets (masked URLs: the server keeps them)."""
        events = [e.strip() for e in self.notify_on.split(",") if e.strip()] if self.notify_on is not None else None
        if self.notify:
            base: list[dict[str, Any]] = [{"url": url} for url in self.notify]
        elif events is not None or self.notify_format is not None:
            if not current:
                raise CliError("USAGE", "--notify-on and --notify-format need --notify URL (the job has no targets)",
                               exit_code=EXIT_USAGE)
            base = [dict(t) for t in current]
        else:
            return None
        for target in base:
            if events is not None:
                target["events"] = events
            if self.notify_format is not None:
                target["format"] = self.notify_format
        return base

    def secret(self) -> Optional[str]:
        """The signing secret to send (generated once per call of this method for "generate")."""
        if self.signing_secret is None:
            return None
        if self.signing_secret.strip().lower() == GENERATE:
            self.generated = generate_secret()
            return self.generated
        return self.signing_secret

    def apply(self, spec: dict[str, Any], current: Optional[list[dict[str, Any]]] = None) -> dict[str, Any]:
        """``spec`` (a job or a patch) with these options set."""
        targets, secret = self.targets(current), self.secret()
        if targets is not None:
            spec["notify"] = targets
        if secret is not None:
            spec["webhook"] = {**(spec.get("webhook") or {}), "signing_secret": secret}
        return spec

    def show_secret(self, job_name: str, fmt: Format) -> None:
        """The generated secret, once: on stdout for people, on stderr beside -o json|yaml."""
        if self.generated is None:
            return
        line = f'signing secret of job "{job_name}" (shown once, give it to the receiver now): {self.generated}'
        if fmt is Format.table:
            typer.echo(line)
        else:
            notice(line)


@job_app.command("create")
def job_create(
    ctx: typer.Context,
    filename: list[str] = FileOption,
    notify: list[str] = NotifyOption,
    notify_on: Optional[str] = NotifyOnOption,
    notify_format: Optional[str] = NotifyFormatOption,
    signing_secret: Optional[str] = SigningSecretOption,
    output: Optional[Format] = OutputOption,
) -> None:
    """Create jobs from a YAML or JSON file.

    Every document is validated before anything is sent; a job whose name already exists is an error (use `job apply` to create-or-update).
    --notify and --signing-secret apply to every job of the files ("generate" makes one secret per job).

    Examples:
      chronosctl job create -f daily-report.yaml
      cat jobs.yaml | chronosctl job create -f -
      chronosctl job create -f backup.yaml --notify https://hooks.slack.com/services/T/B/X --notify-format slack
      chronosctl job create -f backup.yaml --signing-secret generate
    """
    fmt = _fmt(ctx, output)
    docs = load_documents(filename, allow_dirs=True)
    telling = Telling(notify, notify_on, notify_format, signing_secret)
    bodies = [_told(doc, telling) for doc in docs]
    for doc in docs:
        _check_no_redacted_secrets(doc, None)
    client = _state(ctx).client()
    created: list[dict[str, Any]] = []
    try:
        for doc, (body, generated) in zip(docs, bodies, strict=True):
            job = client.create_job(body)
            created.append(job)
            telling.generated = generated
            if fmt is Format.table:
                success(f'job "{job.get("name", doc.name)}" created ({_next_run_note(job)})')
            telling.show_secret(job.get("name", doc.name), fmt)
    finally:
        if fmt is not Format.table and created:
            emit_data(created[0] if len(docs) == 1 else created, fmt)


@job_app.command("apply")
def job_apply(
    ctx: typer.Context,
    filename: list[str] = FileOption,
    prune: bool = typer.Option(False, "--prune", help="Delete jobs on the server that are in none of the files."),
    prune_tag: list[str] = typer.Option(
        [], "--prune-tag", metavar="KEY=VALUE", help="With --prune, only jobs with this tag may be deleted (repeatable)."
    ),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask before pruning."),
    force: bool = typer.Option(
        False, "--force", help="Send every job even if it looks unchanged (e.g. after changing a secret)."
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Only say what would be done."),
    output: Optional[Format] = OutputOption,
) -> None:
    """Create or update jobs so the server matches the files (idempotent).

    Each job in the files is created if absent, replaced if it differs from the server, and left alone
    otherwise; prints created / updated / unchanged per job.

    Read-only fields (id, created_at, next_run, ...) in the files are ignored, so the output of `job get NAME
    -o yaml` can be applied back. Secrets that read "***" keep the value stored on the server; because the
    server never shows secrets, a changed secret is not detected: use --force to send it.

    Examples:
      chronosctl job apply -f daily-report.yaml
      chronosctl job apply -f jobs/ --prune
      chronosctl job get daily-report -o yaml | chronosctl job apply -f -
    """
    fmt = _fmt(ctx, output)
    report = success if fmt is Format.table else notice
    docs = load_documents(filename, allow_dirs=True)
    client = _state(ctx).client()

    # Plan everything first, so a problem in one document sends nothing.
    plan: list[tuple[JobDocument, Optional[dict[str, Any]], list[str]]] = []
    for doc in docs:
        existing = client.find_job(doc.name)
        if existing is None:
            _check_no_redacted_secrets(doc, None)
            plan.append((doc, None, []))
        else:
            _check_no_redacted_secrets(doc, existing)
            changed = differences(existing, doc)
            plan.append((doc, existing, changed or (["forced"] if force else [])))

    to_prune: list[dict[str, Any]] = []
    if prune:
        names = {doc.name for doc in docs}
        to_prune = [
            j for j in client.list_jobs(tags=_key_values(prune_tag, "--prune-tag")) if j.get("name") not in names
        ]

    suffix = " (dry run)" if dry_run else ""
    results: list[dict[str, Any]] = []
    counts = {"created": 0, "updated": 0, "unchanged": 0, "deleted": 0}
    try:
        for doc, existing, changed in plan:
            if existing is None:
                job = doc.body() if dry_run else client.create_job(doc.body())
                counts["created"] += 1
                report(f'job "{doc.name}" created{suffix}')
            elif changed:
                job = existing if dry_run else client.replace_job(doc.name, doc.body())
                counts["updated"] += 1
                report(f'job "{doc.name}" updated ({", ".join(changed)}){suffix}')
            else:
                job = existing
                counts["unchanged"] += 1
                report(f'job "{doc.name}" unchanged')
            results.append(job)

        if to_prune:
            names_text = ", ".join(str(j.get("name")) for j in to_prune)
            if dry_run:
                for j in to_prune:
                    counts["deleted"] += 1
                    report(f'job "{j.get("name")}" deleted (pruned){suffix}')
            elif yes or _confirm(f"Delete {len(to_prune)} job(s) not in the files: {names_text}?"):
                for j in to_prune:
                    client.delete_job(str(j.get("name")))
                    counts["deleted"] += 1
                    report(f'job "{j.get("name")}" deleted (pruned)')
            else:
                report("Nothing pruned.")
    finally:
        if fmt is not Format.table:
            emit_data(results, fmt)
    if fmt is Format.table and len(plan) + len(to_prune) > 1:
        console_summary = ", ".join(f"{n} {k}" for k, n in counts.items() if n or k != "deleted")
        report(console_summary + suffix)


@job_app.command("update")
def job_update(
    ctx: typer.Context,
    name: str = typer.Argument(..., metavar="NAME", help="Job name or id."),
    schedule: Optional[str] = typer.Option(None, "--schedule", help='Cron expression, macro or "@every 10m".'),
    timezone: Optional[str] = typer.Option(None, "--timezone", help='IANA time zone, e.g. "America/New_York".'),
    timeout: Optional[str] = typer.Option(None, "--timeout", help='Per-attempt timeout, e.g. "30s", "5m".'),
    url: Optional[str] = typer.Option(None, "--url", help="Webhook URL."),
    method: Optional[Method] = typer.Option(None, "--method", case_sensitive=False, help="Webhook HTTP method."),
    concurrency: Optional[Concurrency] = typer.Option(None, "--concurrency", help="What to do when a run is still running."),
    enable: Optional[bool] = typer.Option(None, "--enable/--disable", help="Enable or disable the job.", show_default=False),
    description: Optional[str] = typer.Option(None, "--description", help="Free text, up to 1024 characters."),
    set_: list[str] = typer.Option(
        [],
        "--set",
        metavar="KEY.PATH=VALUE",
        help="Set any field; VALUE is read as YAML (5, true, 10s, null removes). Repeatable.",
    ),
    notify: list[str] = NotifyOption,
    notify_on: Optional[str] = NotifyOnOption,
    notify_format: Optional[str] = NotifyFormatOption,
    signing_secret: Optional[str] = SigningSecretOption,
    keep_old_secrets: bool = typer.Option(
        False, "--keep-old-secrets", help="With --signing-secret: the current secrets go on signing too (a rotation)."
    ),
    output: Optional[Format] = OutputOption,
) -> None:
    """Change some fields of a job (sent as one JSON merge patch).

    Fields not named stay as they are. The result is validated before it is sent.

    Examples:
      chronosctl job update daily-report --schedule "0 10 * * 1-5"
      chronosctl job update daily-report --timeout 15m --disable
      chronosctl job update daily-report --set retry_policy.max_attempts=5 --set tags.team=reports
      chronosctl job update daily-report --set webhook.headers.X-Debug=null
      chronosctl job update daily-report --notify https://ops.example.com/hook --notify-on failed,recovered
      chronosctl job update daily-report --signing-secret generate --keep-old-secrets
    """
    fmt = _fmt(ctx, output)
    telling = Telling(notify, notify_on, notify_format, signing_secret)
    if keep_old_secrets and signing_secret is None:
        raise CliError("USAGE", "--keep-old-secrets goes with --signing-secret generate|whsec_...", exit_code=EXIT_USAGE)
    patch: dict[str, Any] = {}
    for field_name, value in (
        ("schedule", schedule),
        ("timezone", timezone),
        ("timeout", timeout),
        ("description", description),
    ):
        if value is not None:
            patch[field_name] = value
    if concurrency is not None:
        patch["concurrency"] = concurrency.value
    if enable is not None:
        patch["enabled"] = enable
    webhook: dict[str, Any] = {}
    if url is not None:
        webhook["url"] = url
    if method is not None:
        webhook["method"] = method.value
    if webhook:
        patch["webhook"] = webhook
    for item in set_:
        path, sep, raw = item.partition("=")
        keys = [k for k in path.strip().split(".")]
        if not sep or not all(keys):
            raise typer.BadParameter(f'"{item}" is not KEY.PATH=VALUE (e.g. retry_policy.max_attempts=5)', param_hint="--set")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        nested: Any = value
        for key in reversed(keys):
            nested = {key: nested}
        patch = merge_patch_keep_nulls(patch, nested)
    client = _state(ctx).client()
    current = client.get_job(name) if patch or telling.wanted else {}
    patch = telling.apply(patch, current.get("notify"))
    if keep_old_secrets:
        stored = (current.get("webhook") or {}).get("signing_secret")
        old_secrets = stored if isinstance(stored, list) else [stored] if stored else []
        patch["webhook"]["signing_secret"] = [patch["webhook"]["signing_secret"], *old_secrets][:MAX_SIGNING_SECRETS]
    if not patch:
        raise CliError(
            "USAGE",
            "nothing to update: give at least one option such as --schedule or --set KEY=VALUE (see --help)",
            exit_code=EXIT_USAGE,
        )
    spec = {k: v for k, v in current.items() if k in JobCreate.model_fields}
    try:
        parse_job(merge_patch(spec, patch))
    except ValidationError as e:
        raise CliError(
            e.code, f'job "{current.get("name", name)}" would not be valid; nothing was sent', exit_code=EXIT_VALIDATION,
            errors=_field_errors(e),
        ) from None
    job = client.patch_job(name, patch)
    if fmt is Format.table:
        changed = ", ".join(sorted(patch))
        success(f'job "{job.get("name", name)}" updated ({changed}); {_next_run_note(job)}')
    else:
        emit_data(job, fmt)
    telling.show_secret(job.get("name", name), fmt)


def merge_patch_keep_nulls(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """Combine two patches: like a merge patch, but a null stays (it deletes on the server)."""
    result = dict(target)
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merge_patch_keep_nulls(result[key], value)
        else:
            result[key] = value
    return result


@job_app.command("enable")
def job_enable(
    ctx: typer.Context, name: str = typer.Argument(..., metavar="NAME", help="Job name or id."), output: Optional[Format] = OutputOption
) -> None:
    """Enable a job: it runs on its schedule again.

    Its next run is computed from now; an "@every" schedule counts from the moment it is enabled.

    Example:
      chronosctl job enable daily-report
    """
    fmt = _fmt(ctx, output)
    job = _state(ctx).client().set_enabled(name, True)
    if fmt is Format.table:
        success(f'job "{job.get("name", name)}" enabled ({_next_run_note(job)})')
    else:
        emit_data(job, fmt)


@job_app.command("disable")
def job_disable(
    ctx: typer.Context, name: str = typer.Argument(..., metavar="NAME", help="Job name or id."), output: Optional[Format] = OutputOption
) -> None:
    """Disable a job: it stops running on its schedule (manual triggers still work).

    Nothing new is scheduled until `job enable`; its definition and history are kept.

    Example:
      chronosctl job disable daily-report
    """
    fmt = _fmt(ctx, output)
    job = _state(ctx).client().set_enabled(name, False)
    if fmt is Format.table:
        success(f'job "{job.get("name", name)}" disabled')
    else:
        emit_data(job, fmt)


@job_app.command("trigger")
def job_trigger(
    ctx: typer.Context, name: str = typer.Argument(..., metavar="NAME", help="Job name or id."), output: Optional[Format] = OutputOption
) -> None:
    """Run a job now, outside its schedule. Prints the new execution's id.

    The execution is recorded with trigger "manual" and shows up in `execution list`.

    Example:
      chronosctl job trigger daily-report
    """
    fmt = _fmt(ctx, output)
    execution = _state(ctx).client().trigger(name)
    if fmt is Format.table:
        job_name = execution.get("job_name") or name
        success(f'job "{job_name}" triggered: execution {execution.get("id")} ({execution.get("status")})')
        notice(f"Follow it with: chronosctl execution get {job_name} {execution.get('id')}")
    else:
        emit_data(execution, fmt)


@job_app.command("delete")
def job_delete(
    ctx: typer.Context,
    name: str = typer.Argument(..., metavar="NAME", help="Job name or id."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
) -> None:
    """Delete a job and its execution history. Asks first unless --yes.

    The answer is read from the terminal or from stdin; with neither (a script), it refuses: pass --yes.

    Examples:
      chronosctl job delete daily-report
      chronosctl job delete daily-report --yes
    """
    client = _state(ctx).client()
    job = client.get_job(name)  # unknown job: exit 3 before asking anything
    job_name = job.get("name", name)
    if not yes and not _confirm(f'Delete job "{job_name}" and its execution history?'):
        success("Not deleted.")
        raise typer.Exit(EXIT_ERROR)
    client.delete_job(name)
    success(f'job "{job_name}" deleted')


# ---------------------------------------------------------------- executions


@execution_app.command("list")
def execution_list(
    ctx: typer.Context,
    name: str = typer.Argument(..., metavar="NAME", help="Job name or id."),
    limit: int = typer.Option(20, "--limit", "-n", min=1, help="Show at most this many executions, newest first."),
    status: Optional[ExecutionStatus] = typer.Option(None, "--status", help="Only executions with this status."),
    output: Optional[Format] = OutputOption,
) -> None:
    """List a job's executions, newest first.

    Statuses: pending, running, success, failed, timeout, skipped, cancelled.

    Examples:
      chronosctl execution list daily-report --limit 10
      chronosctl execution list daily-report --status failed -o json
    """
    fmt = _fmt(ctx, output)
    items = _state(ctx).client().list_executions(name, status=status.value if status else None, limit=limit)
    if fmt is Format.table:
        print_executions(name, items)
    else:
        emit_data(items, fmt)


@execution_app.command("get")
def execution_get(
    ctx: typer.Context,
    name: str = typer.Argument(..., metavar="NAME", help="Job name or id."),
    execution_id: str = typer.Argument(..., metavar="ID", help="Execution id."),
    output: Optional[Format] = OutputOption,
) -> None:
    """Show one execution: attempts, status codes, errors and the response body.

    The table view shortens long response bodies; -o json shows all of what the server kept (the first 64 KiB).

    Example:
      chronosctl execution get daily-report 0b6c6f9e-3d4a-4c1e-9a63-2f1f5b7c9d10
    """
    fmt = _fmt(ctx, output)
    execution = _state(ctx).client().get_execution(name, execution_id)
    if fmt is Format.table:
        print_execution(execution)
    else:
        emit_data(execution, fmt)


@execution_app.command("cancel")
def execution_cancel(
    ctx: typer.Context,
    name: str = typer.Argument(..., metavar="NAME", help="Job name or id."),
    execution_id: str = typer.Argument(..., metavar="ID", help="Execution id."),
    output: Optional[Format] = OutputOption,
) -> None:
    """Cancel a pending or running execution (including one waiting to retry).

    A finished execution cannot be cancelled: that is a conflict (exit 1).

    Example:
      chronosctl execution cancel daily-report 0b6c6f9e-3d4a-4c1e-9a63-2f1f5b7c9d10
    """
    fmt = _fmt(ctx, output)
    execution = _state(ctx).client().cancel_execution(name, execution_id)
    if fmt is Format.table:
        success(f"execution {execution.get('id', execution_id)} of job \"{execution.get('job_name', name)}\": {execution.get('status')}")
    else:
        emit_data(execution, fmt)


# ---------------------------------------------------------------- schedules


@schedule_app.command("validate")
def schedule_validate(
    ctx: typer.Context,
    expression: str = typer.Argument(..., metavar="EXPR", help='Schedule, e.g. "0 9 * * 1-5", "@daily", "@every 10m".'),
    timezone: str = typer.Option("UTC", "--timezone", "-z", help="IANA time zone the schedule is read in."),
    count: int = typer.Option(5, "--count", "-n", min=1, max=100, help="How many next runs to show."),
    output: Optional[Format] = OutputOption,
) -> None:
    """Check a schedule and show when it would fire next, in its zone and in UTC.

    The server reads the expression exactly as it would for a job: 5-field cron, 6-field cron with seconds
    first, macros such as @daily, and "@every <duration>".

    Examples:
      chronosctl schedule validate "0 9 * * 1-5" -z America/Los_Angeles
      chronosctl schedule validate "@every 90s" --count 3
      chronosctl schedule validate "30 2 * * *" -z Europe/Berlin -n 10
    """
    fmt = _fmt(ctx, output)
    result = _state(ctx).client().validate_schedule(expression, timezone, count)
    if isinstance(result, dict) and result.get("valid") is False:
        message = result.get("error") or result.get("detail") or result.get("description") or "not a valid schedule"
        raise CliError("INVALID_SCHEDULE", str(message), exit_code=EXIT_VALIDATION, errors=result.get("errors") or [])
    if fmt is Format.table:
        print_schedule(result)
    else:
        emit_data(result, fmt)


if __name__ == "__main__":  # pragma: no cover
    app()
