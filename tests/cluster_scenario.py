r"""Chronos on a three-node Ray cluster on this machine: jobs spread over the
nodes, a worker node dies, the supervisor is recreated on another node.

``tests/test_cluster.py`` runs this in its own process (the suite's shared
local Ray may be connected in the test process, and a driver joins only one
cluster). It prints what it measured and writes its observations as JSON for
the test to judge. By hand::

    RAY_TMPDIR=$(mktemp -d /tmp/chr-XXXX) RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 \
        python tests/cluster_scenario.py postgresql://postgres@127.0.0.1:5432/DB out.json

``RAY_TMPDIR`` keeps the cluster's files, including the "current cluster"
address that a bare ``ray.init()`` on this machine would follow, private;
``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` makes every node's address 127.0.0.1
(Ray would otherwise use this machine's interface address).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path

import ray
from ray.cluster_utils import Cluster
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from chronos.actors.client import SupervisorClient
from chronos.actors.ray_host import SUPERVISOR_NAME
from chronos.actors.runtime import SLOT_RESOURCE
from chronos.actors.supervisor import SupervisorActor, start_supervisor
from chronos.models import parse_job
from chronos.settings import Settings

from receiver import Receiver

JOBS = 6
SLOTS_PER_NODE = 4  # 3 nodes x 4 slots: the 6 jobs fit twice over, so a lost node's jobs fit elsewhere
# A node is declared dead after about period x threshold (Ray's defaults: 3 s x 5).
# Shortened so the test stays quick; docs/cluster.md shows the production knobs.
FAST_HEALTH_CHECKS = {"health_check_period_ms": 500, "health_check_failure_threshold": 4}
NAMESPACE = "chronos-cluster"


def node_args(**extra):
    return dict(num_cpus=1, resources={SLOT_RESOURCE: SLOTS_PER_NODE}, include_dashboard=False, **extra)


def actor_nodes() -> dict[str, dict]:
    """name -> {node, restarts, state} of the live named actors in our namespace."""
    return {
        info["Name"]: {"node": info["Address"]["NodeID"], "restarts": info["NumRestarts"], "state": info["State"]}
        for info in ray._private.state.actors().values()
        if info["Name"] and info["State"] != "DEAD"
    }


async def wait_until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = await predicate()
        if result:
            return result
        await asyncio.sleep(0.2)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


async def fired_since(receiver, names, since: float, n: int = 1):
    """True once every job in ``names`` has had ``n`` requests arrive after ``since``."""
    return all(sum(r.time > since for r in receiver.requests_for(f"/hook/{name}")) >= n for name in names)


async def scenario(cluster: Cluster, receiver: Receiver, settings: Settings, out: dict) -> None:
    client = SupervisorClient(settings.namespace)
    # As with `ray up cluster.yaml`: `chronos serve` starts the supervisor on the head
    # before the workers join, so that is where it lives.
    supervisor = await asyncio.to_thread(start_supervisor, settings)
    workers = [cluster.add_node(**node_args()) for _ in range(2)]  # Ray wants the main thread here
    cluster.wait_for_nodes()
    out["nodes"] = {"head": cluster.head_node.node_id, "workers": [w.node_id for w in workers]}
    names = [f"tick-{i}" for i in range(JOBS)]
    for name in names:
        spec = {"name": name, "schedule": "*/1 * * * * *", "webhook": {"url": receiver.url(f"/hook/{name}"), "method": "POST", "body": "{}"}}
        await client.create_job(parse_job(spec))
    started = time.time()
    await wait_until(lambda: fired_since(receiver, names, started, 2), 30, "every job to fire twice")
    out["warm_at"] = time.time()

    # 1. Spread: which node each job actor lives on, and what the executions recorded.
    placement = {name: actor_nodes()[f"chronos:job:{name}"]["node"] for name in names}
    out["placement_before"] = placement
    out["supervisor_before"] = actor_nodes()[SUPERVISOR_NAME]
    out["execution_nodes_before"] = sorted({e.node for name in names for e in (await client.list_executions(name, limit=50))[0] if e.node})

    # 2. Lose a worker node that hosts job actors (killed, not drained: a crash).
    victim = max(workers, key=lambda w: sum(node == w.node_id for node in placement.values()))
    orphaned = [name for name, node in placement.items() if node == victim.node_id]
    out["victim"], out["orphaned_jobs"] = victim.node_id, orphaned
    # A machine that dies takes its Ray worker processes with it; remove_node alone kills
    # the raylet and lets workers linger until they notice (~1 s), so kill them too.
    pids = [info["Pid"] for info in ray._private.state.actors().values() if info["Address"]["NodeID"] == victim.node_id and info["State"] == "ALIVE"]
    killed_at = time.time()
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    await asyncio.to_thread(cluster.remove_node, victim, False)
    dead_at = time.time()  # the node's processes are gone: nothing it sent arrives after this
    await wait_until(lambda: fired_since(receiver, orphaned, dead_at), 60, "the lost node's jobs to fire again")
    recovery = {name: min(r.time for r in receiver.requests_for(f"/hook/{name}") if r.time > dead_at) - killed_at for name in orphaned}
    out["recovery_seconds"] = recovery
    print(f"node lost: {len(orphaned)} job(s) fired again {min(recovery.values()):.1f}-{max(recovery.values()):.1f}s after the kill", flush=True)
    after_loss = time.time()
    await wait_until(lambda: fired_since(receiver, names, after_loss, 3), 30, "every job to keep firing")
    out["placement_after_loss"] = {name: actor_nodes()[f"chronos:job:{name}"]["node"] for name in names}
    out["supervisor_after_loss"] = actor_nodes()[SUPERVISOR_NAME]

    # 3. Kill the supervisor for good and recreate it on a surviving worker: PostgreSQL has everything.
    jobs_before = sorted(j.name for j in (await client.list_jobs(limit=100))[0])
    history_before = {name: len((await client.list_executions(name, limit=500))[0]) for name in names}
    ray.kill(supervisor, no_restart=True)
    survivor = next(w for w in workers if w is not victim)
    out["supervisor_target"] = survivor.node_id
    restart_at = time.time()
    await asyncio.to_thread(recreate_supervisor, settings, survivor.node_id)
    supervisor = await asyncio.to_thread(start_supervisor, settings)  # attaches to the recreated one
    out["supervisor_restore_seconds"] = time.time() - restart_at
    out["supervisor_after_restart"] = actor_nodes()[SUPERVISOR_NAME]
    out["jobs_before_restart"] = jobs_before
    out["jobs_after_restart"] = sorted(j.name for j in (await client.list_jobs(limit=100))[0])
    restored = time.time()
    await wait_until(lambda: fired_since(receiver, names, restored, 2), 30, "every job to fire after the supervisor restart")
    print(f"supervisor recreated on another node and restored {len(out['jobs_after_restart'])} jobs in {out['supervisor_restore_seconds']:.1f}s", flush=True)
    await asyncio.sleep(1.5)  # let the last reports reach the store

    # 4. What the store holds, and what the receiver saw.
    out["history_before_restart"] = history_before
    out["executions"] = {
        name: [e.model_dump(mode="json", include={"id", "scheduled_at", "trigger", "status", "missed_slots", "node"}) for e in (await client.list_executions(name, limit=500))[0]]
        for name in names
    }
    out["requests"] = [
        {"path": r.path, "time": r.time, **{h: r.headers[h] for h in ("X-Chronos-Job-ID", "X-Chronos-Scheduled-Time", "X-Chronos-Execution-ID")}}
        for r in receiver.requests
    ]
    out["job_ids"] = {name: str((await client.get_job(name)).id) for name in names}
    out["window"] = {"killed_at": killed_at, "dead_at": dead_at}
    await supervisor.shutdown.remote()
    ray.kill(supervisor, no_restart=True)


def recreate_supervisor(settings: Settings, node_id: str) -> None:
    """A fresh supervisor actor pinned to ``node_id`` (start_supervisor then attaches to it)."""
    strategy = NodeAffinitySchedulingStrategy(node_id, soft=False)
    while True:  # the killed actor's name can linger for a moment
        try:
            handle = SupervisorActor.options(
                name=SUPERVISOR_NAME, namespace=settings.namespace, lifetime="detached", scheduling_strategy=strategy
            ).remote(settings)
            ray.get(handle.call.remote("ready"), timeout=60)
            return
        except ValueError:  # "the name is already taken"
            time.sleep(0.2)


async def main(database_url: str, out_path: str) -> None:
    cluster = Cluster(initialize_head=True, connect=True, head_node_args=node_args(_system_config=FAST_HEALTH_CHECKS))
    out: dict = {}
    try:
        settings = Settings(database_url=database_url, namespace=NAMESPACE, placement="dedicated")
        async with Receiver() as receiver:
            await scenario(cluster, receiver, settings, out)
    finally:
        Path(out_path).write_text(json.dumps(out, default=str))
        ray.shutdown()
        cluster.shutdown()


if __name__ == "__main__":
    if os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER") != "0" or "RAY_TMPDIR" not in os.environ:
        sys.exit("set RAY_TMPDIR and RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 (see the docstring)")
    asyncio.run(main(sys.argv[1], sys.argv[2]))
