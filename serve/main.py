"""``chronos serve``: start (or join) Ray, the supervisor with every job
restored from the store, and the REST API on Ray Serve; stop them all
cleanly on Ctrl-C or SIGTERM."""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Optional, TextIO

import typer

import chronos

app = typer.Typer(add_completion=False, help="The Chronos server.", no_args_is_help=True)
log = logging.getLogger("chronos")


@app.callback()
def main() -> None:
    """Chronos: a webhook scheduler on Ray."""


@app.command()
def serve(
    host: Optional[str] = typer.Option(None, help="Address the API listens on [default: 127.0.0.1]."),
    port: Optional[int] = typer.Option(None, help="API port [default: 8080]."),
    address: Optional[str] = typer.Option(None, envvar="RAY_ADDRESS", help="Join this Ray cluster ('auto' to find it)."),
    data_dir: Optional[Path] = typer.Option(None, help="Where the embedded SQLite database lives [default: ./chronos-data]."),
    database_url: Optional[str] = typer.Option(None, help="A PostgreSQL (or SQLite) URL instead of the embedded database."),
    placement: Optional[str] = typer.Option(
        None, help="auto (one Ray actor per job up to the node's job slots, pooled after), dedicated or pooled [default: auto]."
    ),
    dashboard: bool = typer.Option(True, help="Start the Ray dashboard (local Ray only)."),
) -> None:
    """Start Chronos and keep it running until Ctrl-C."""
    from chronos.settings import load_settings

    settings = load_settings(
        host=host, port=port, ray_address=address, data_dir=data_dir, database_url=database_url, placement=placement
    )
    from chronos.serve.output import divert_ray_output

    if settings.database_url is None:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    _check_port_free(settings.host, settings.port)  # before the diversion: this error is for the terminal
    terminal = divert_ray_output(settings.data_dir / "logs")
    print(f"Starting Chronos (Ray's own output goes to {terminal.log})...", file=terminal.out)
    server = Server(settings, dashboard=dashboard, terminal=terminal.out)
    signal.signal(signal.SIGTERM, lambda *_: server.request_stop())
    try:
        server.start()
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


@app.command("rotate-key")
def rotate_key(
    new_key: str = typer.Option(..., envvar="CHRONOS_NEW_SECRET_KEY", help="The Fernet key to encrypt webhook secrets with."),
    old_key: Optional[str] = typer.Option(
        None, envvar="CHRONOS_OLD_SECRET_KEY", help="The key they are encrypted with now (omit if they are not encrypted yet)."
    ),
    data_dir: Optional[Path] = typer.Option(None, help="Where the embedded SQLite database lives [default: ./chronos-data]."),
    database_url: Optional[str] = typer.Option(None, help="A PostgreSQL (or SQLite) URL instead of the embedded database."),
) -> None:
    """Re-encrypt the webhook secrets of every stored job with a new CHRONOS_SECRET_KEY.

    Stop the server first (or run it with CHRONOS_SECRET_KEY=NEW,OLD meanwhile), then start it with the new key.
    Keys may come from CHRONOS_NEW_SECRET_KEY / CHRONOS_OLD_SECRET_KEY to keep them out of the shell history."""
    from chronos.errors import ChronosError
    from chronos.settings import load_settings
    from chronos.store import Store

    settings = load_settings(data_dir=data_dir, database_url=database_url)
    try:
        store = Store(settings.store_url, secret_key=new_key)
        try:
            store.create_schema()
            count = store.rotate_secret_key(new_key, old_key)
        finally:
            store.close()
    except ChronosError as e:
        typer.echo(f"Error: {e.code}: {e.message}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"Re-encrypted the webhook secrets of {count} job(s) in {_safe_url(settings.store_url)}.")
    typer.echo("Start the server with CHRONOS_SECRET_KEY set to the new key.")


#: Longest wait for the restored jobs' catch-up before the API starts anyway (a
#: slow receiver holding a catch-up run must not keep the API down).
SETTLE_TIMEOUT = 10.0

#: Ray Serve's own low-latency settings (its performance guide): the app and the
#: router run on the replica's main event loop instead of hopping between threads,
#: and request-path log lines are written in batches, not flushed one by one.
SERVE_TUNING = {
    "RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0",
    "RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP": "0",
    "RAY_SERVE_REQUEST_PATH_LOG_BUFFER_SIZE": "1000",
}


class Server:
    def __init__(self, settings, *, dashboard: bool, terminal: TextIO = sys.stdout):
        self.settings = settings
        self.dashboard = dashboard
        self.terminal = terminal
        self._stop = False
        self._supervisor: Any = None

    def request_stop(self) -> None:
        self._stop = True

    def start(self) -> None:
        import ray

        from chronos.actors.runtime import SLOT_RESOURCE
        from chronos.actors.supervisor import start_supervisor

        s = self.settings
        for name, value in SERVE_TUNING.items():  # inherited by the Ray processes started below
            os.environ.setdefault(name, value)
        if s.ray_address:
            context = ray.init(address=s.ray_address, namespace=s.namespace, log_to_driver=False)
        else:
            with _lean_local_ray(self.dashboard):
                context = ray.init(
                    namespace=s.namespace,
                    resources={SLOT_RESOURCE: s.job_slots_per_node},
                    include_dashboard=self.dashboard,
                    log_to_driver=False,
                )
        # Jobs first, API second: on a small node starting Serve's three processes
        # beside the job hosts delays every restored job's first fire (10,000 jobs
        # on 2 cores: all fired 8 s later). The API starts once the restored jobs'
        # catch-up is through, or after SETTLE_TIMEOUT (its import is deferred too).
        self._supervisor = start_supervisor(s)
        self._settle()
        self._start_api()
        self._banner(context)

    def _settle(self) -> None:
        import ray

        try:
            if not ray.get(self._supervisor.settle.remote(SETTLE_TIMEOUT), timeout=SETTLE_TIMEOUT + 30):
                log.warning("the restored jobs had not settled after %ss: starting the API anyway", SETTLE_TIMEOUT)
        except Exception as e:  # the API must come up regardless
            log.warning("waiting for the restored jobs to settle failed (%s): starting the API", e)

    def _start_api(self) -> None:
        from ray import serve

        from chronos.serve.deployment import APP_NAME, build_app

        s = self.settings
        serve.start(http_options={"host": s.host, "port": s.port}, detached=False)
        serve.run(build_app(s), name=APP_NAME, route_prefix="/")

    def _banner(self, context) -> None:
        s = self.settings
        host = "localhost" if s.host in ("127.0.0.1", "0.0.0.0") else s.host
        base = f"http://{host}:{s.port}"
        dashboard = getattr(context, "dashboard_url", None)
        lines = [
            f"Chronos {chronos.__version__} is up ({s.placement} placement, store: {_safe_url(s.store_url)})",
            f"  Console    {base}/ui",
            f"  API        {base}/api/v1",
            f"  Docs       {base}/docs",
            f"  Metrics    {base}/metrics",
        ]
        if dashboard:
            lines.append(f"  Ray        http://{dashboard}  (token: run `ray get-auth-token`, or see ~/.ray/auth_token)")
        lines.append("Press Ctrl-C to stop.")
        print("\n".join(lines), file=self.terminal, flush=True)

    def run(self) -> None:
        """Keep the driver alive; bring the supervisor back if it vanished."""
        import ray

        from chronos.actors.supervisor import start_supervisor

        while not self._stop:
            time.sleep(1.0)
            try:
                ray.get(self._supervisor.call.remote("ready"), timeout=30)
            except Exception as e:  # detached actor gone for good: start it again
                log.warning("supervisor check failed (%s); ensuring it runs", e)
                self._supervisor = start_supervisor(self.settings)

    def stop(self) -> None:
        import ray
        from ray import serve

        if not ray.is_initialized():
            return
        print("Stopping Chronos...", file=self.terminal, flush=True)
        try:
            serve.shutdown()
        except Exception as e:
            log.warning("serve shutdown: %s", e)
        if self._supervisor is not None:
            try:
                ray.get(self._supervisor.shutdown.remote(), timeout=30)
            except Exception as e:
                log.warning("supervisor shutdown: %s", e)
            ray.kill(self._supervisor, no_restart=True)
        ray.shutdown()
        print("Stopped.", file=self.terminal, flush=True)


@contextmanager
def _lean_local_ray(dashboard: bool):
    """Start the embedded Ray without the head processes Chronos never uses.

    - The log monitor only streams worker logs to drivers; we start with
      ``log_to_driver=False`` (the logs stay in files, where the dashboard reads
      them).
    - The autoscaler monitor has nothing to scale on one embedded node.
    - Without the dashboard, its API server serves only Ray's job-submission
      and state APIs, which Chronos does not use.

    Idle Python processes of ≈ 80-120 MiB each, started on every start: 0.28 GiB
    of a 10,000-job server's 2 GiB. ``ray.init`` has no parameters for them
    (``ray start`` has ``--no-monitor`` and ``--include-log-monitor``; nothing
    turns the API server off), so they are set on Ray's node while it starts.
    ``tests/test_e2e.py`` checks that none of them runs.
    """
    import inspect

    from ray._private.node import Node
    from ray._private.parameter import RayParams

    # A Ray without these names starts as it is (and that test fails): never a broken start.
    params_init, start_api_server = RayParams.__init__, getattr(Node, "start_api_server", None)
    known = inspect.signature(params_init).parameters
    lean = {k: v for k, v in (("include_log_monitor", False), ("no_monitor", True)) if k in known}

    def lean_params(self, *args, **kwargs):
        params_init(self, *args, **{**lean, **kwargs})

    RayParams.__init__ = lean_params
    if not dashboard and start_api_server is not None:
        Node.start_api_server = lambda self, **kwargs: None
    try:
        yield
    finally:
        RayParams.__init__ = params_init
        if start_api_server is not None:
            Node.start_api_server = start_api_server


def _check_port_free(host: str, port: int) -> None:
    """Fail fast and clearly, instead of Serve retrying a taken port forever."""
    import socket

    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as e:
            raise SystemExit(f"Error: port {port} on {host} is not available ({e.strerror}): stop what uses it or pass --port") from None


def _safe_url(url: str) -> str:
    """A database URL without its password, for printing."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


if __name__ == "__main__":
    sys.exit(app())
