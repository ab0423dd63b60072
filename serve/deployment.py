"""The Ray Serve deployment of the REST app. The app talks to the supervisor
actor by name through :class:`chronos.actors.client.SupervisorClient`."""

from __future__ import annotations

import gc

from ray import serve

from chronos.settings import Settings

APP_NAME = "chronos"


def build_app(settings: Settings):
    from chronos.actors.client import SupervisorClient
    from chronos.serve.app import create_app

    api = create_app(SupervisorClient(settings.namespace), settings)

    @serve.deployment(name="chronos-api", num_replicas=1, ray_actor_options={"num_cpus": 0}, max_ongoing_requests=1000)
    @serve.ingress(api)
    class ChronosAPI:
        def __init__(self):
            # The app, FastAPI and pydantic live as long as the replica: keep them out
            # of every later collection (a full one over them paused a request ≈ 20 ms).
            gc.freeze()

    return ChronosAPI.bind()  # type: ignore[attr-defined]  # added by @serve.deployment
