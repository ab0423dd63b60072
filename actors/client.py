"""``SupervisorClient``: the :class:`chronos.backend.Backend` over Ray, for the
REST layer. Looks the supervisor up by name and again after it restarts;
unwraps Ray's error wrappers so the API sees Chronos errors."""

from __future__ import annotations

import asyncio

from ray.exceptions import GetTimeoutError, RayActorError, RayTaskError

from chronos.errors import Unavailable

from chronos.actors.ray_host import find_supervisor
from chronos.actors.supervisor import BACKEND_METHODS

CALL_TIMEOUT = 60.0


class SupervisorClient:
    def __init__(self, namespace: str = "chronos"):
        self._namespace = namespace
        self._handle = None

    def _supervisor(self):
        if self._handle is None:
            self._handle = find_supervisor(self._namespace)
        return self._handle

    def __getattr__(self, method: str):
        if method not in BACKEND_METHODS:
            raise AttributeError(method)

        async def call(*args, **kwargs):
            for attempt in (1, 2):
                try:
                    ref = self._supervisor().call.remote(method, *args, **kwargs)
                    return await asyncio.wait_for(ref, CALL_TIMEOUT)
                except RayTaskError as e:
                    raise (e.cause if isinstance(e.cause, Exception) else e) from None
                except RayActorError as e:  # a restarted supervisor: resolve it again, once
                    self._handle = None
                    if attempt == 2:
                        raise Unavailable(f"the supervisor is restarting ({type(e).__name__}): try again shortly") from None
                except (GetTimeoutError, asyncio.TimeoutError):
                    # Not retried: the call may still complete (a create would then clash).
                    raise Unavailable(f"the supervisor did not answer within {CALL_TIMEOUT:g}s: try again shortly") from None

        return call
