"""The Ray boundary, written once: a named actor looked up lazily, and Ray's errors turned into
ours (the way httpx maps httpcore's: a table, most specific first, ``raise ... from``).

A remote method that raised comes back wrapped in ``RayTaskError``: its own error is re-raised
as if the call were local. Ray's own failures (an actor died, a call timed out) become the
Chronos error the table names for them.
"""

from __future__ import annotations

import asyncio
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Optional, Sequence

import ray
from ray.exceptions import GetTimeoutError, RayActorError, RayTaskError

from chronos.errors import Unavailable

__all__ = ["SUPERVISOR_NAME", "TIMEOUTS", "ErrorTable", "NamedActor", "ray_errors", "supervisor"]

SUPERVISOR_NAME = "chronos-supervisor"

#: What a call that did not answer in time raises, depending on how it was awaited.
TIMEOUTS = (GetTimeoutError, asyncio.TimeoutError)

#: ``(Ray's errors, how to make ours from one)``, most specific first: the first match decides.
ErrorTable = Sequence[tuple[tuple[type[BaseException], ...], Callable[[BaseException], Exception]]]


@contextmanager
def ray_errors(table: ErrorTable, *, lost: Callable[[], None] = lambda: None,
               lost_on: tuple[type[BaseException], ...] = (RayActorError,)) -> Iterator[None]:
    """Around one remote call: the remote method's own error as itself, Ray's by ``table``.
    ``lost`` is told first when the error means the handle is stale (``lost_on``)."""
    try:
        yield
    except RayTaskError as e:
        raise (e.cause if isinstance(e.cause, Exception) else e) from None
    except Exception as e:
        if isinstance(e, lost_on):
            lost()
        for kinds, ours in table:
            if isinstance(e, kinds):
                raise ours(e) from e
        raise


class NamedActor:
    """A named actor's handle, looked up on first use and again after :meth:`forget`
    (a restarted actor has a new handle under the same name)."""

    def __init__(self, name: str, namespace: str, missing: Callable[[], Exception]):
        self.name = name
        self._namespace = namespace
        self._missing = missing
        self._handle: Optional[Any] = None

    def get(self) -> Any:
        if self._handle is None:
            try:
                self._handle = ray.get_actor(self.name, namespace=self._namespace)
            except ValueError:
                raise self._missing() from None
        return self._handle

    def forget(self) -> None:
        self._handle = None


def supervisor(namespace: str) -> NamedActor:
    """The supervisor actor, as every other process reaches it."""
    return NamedActor(SUPERVISOR_NAME, namespace,
                      lambda: Unavailable("the supervisor is not running (is `chronos serve` up?)"))
