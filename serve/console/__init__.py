"""The web console under ``/ui``: server-rendered pages over the same backend as the
REST API (see ``routes.py``), with its own session and CSRF handling (``session.py``)."""

from chronos.serve.console.routes import PREFIX, install_console

__all__ = ["PREFIX", "install_console"]
