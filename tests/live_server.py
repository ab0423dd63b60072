"""The real REST app over a real in-process supervisor (a SQLite file, job hosts in
this process), served by uvicorn on a free port of 127.0.0.1 from a thread with its
own event loop: for clients that need a real socket (the CLI, Schemathesis).

    with LiveServer(tmp_path / "chronos.db", Settings(api_tokens=[])) as server:
        httpx.get(f"{server.url}/health")
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from pathlib import Path
from typing import Any, Optional

import uvicorn

from chronos.dispatcher import Dispatcher
from chronos.local_runtime import LocalRuntime
from chronos.serve.app import create_app
from chronos.settings import Settings
from chronos.store import Store
from chronos.supervisor import Supervisor


class LiveServer:
    def __init__(self, db: Path, settings: Settings, dispatcher: Optional[Dispatcher] = None):
        """``dispatcher``: sends the hosts' webhooks and the notifications (default: the real ones)."""
        self.supervisor = Supervisor(Store(f"sqlite:///{db}"), notify_dispatcher=dispatcher)
        self.runtime = LocalRuntime(self.supervisor, dispatcher=dispatcher)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        app = create_app(self.supervisor, settings)
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False))
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def start(self) -> "LiveServer":
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.supervisor.start(self.runtime), self.loop).result(60)
        self._serving = asyncio.run_coroutine_threadsafe(self.server.serve(sockets=[self.sock]), self.loop)
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline, "test server did not start"
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self._serving.result(30)
        asyncio.run_coroutine_threadsafe(self.supervisor.stop(), self.loop).result(60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.sock.close()

    def __enter__(self) -> "LiveServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
