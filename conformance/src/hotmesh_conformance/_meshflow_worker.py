"""A MeshFlow worker process for the kit's crash tests (not a public API).

Serves the kit's workflows (``hotmesh_conformance._flows``) on one task queue. Activities write a
ledger line per run and the store is wrapped so every applied transition is appended to the
commit ledger (see :mod:`hotmesh_conformance.ledger`). ``--die-after-dispatch`` is a crash point:
the process exits right after its first dispatch transition committed, before the task is acked.

``HOTMESH_KIT_CLOCK_SKEW=<seconds>`` skews this process's wall clock (see
:mod:`hotmesh_conformance._skew`, test T-1).
"""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path
from typing import Any

from hotmesh import Connection, MeshFlow, load_config
from hotmesh.meshflow.worker import Worker
from hotmesh.providers import Role, default_registry
from hotmesh_conformance import _flows, ledger
from hotmesh_conformance._skew import skew_clock_from_env


def _die_after_first_dispatch() -> None:
    original = Worker._dispatch

    async def dispatch_then_die(self: Worker, *args: Any, **kwargs: Any) -> Any:
        result = await original(self, *args, **kwargs)
        if result is not None:
            print("dispatched", flush=True)
            os._exit(9)
        return result

    Worker._dispatch = dispatch_then_die  # type: ignore[method-assign]


async def _main(args: argparse.Namespace) -> None:
    os.environ[ledger.LEDGER_ENV] = args.ledger
    config = load_config(
        store=args.store, stream=args.stream, sub=args.sub, url=args.store, namespace=args.namespace,
        timer_lease=args.timer_lease, environ={},
    )  # fmt: skip
    if args.die_after_dispatch:
        _die_after_first_dispatch()
    store = default_registry().create(Role.STORE, args.store, namespace=args.namespace, options={})
    await store.open()
    recording = ledger.RecordingStore(store, ledger.Ledger(Path(args.ledger)).commits_path)
    connection = Connection(config, store=recording)  # a forwarding wrapper: a Store by protocol
    worker = await MeshFlow.Worker.create(
        connection=connection,
        task_queue=args.queue,
        workflow=_flows.ALL,
        concurrency=args.concurrency,
        activity_concurrency=args.concurrency,
        workflow_visibility_timeout=args.visibility,
        activity_visibility_timeout=args.visibility,
    )
    print("ready", flush=True)
    await worker.run(grace=1.0)


def main() -> None:
    parser = argparse.ArgumentParser()
    for name in ("--store", "--stream", "--sub", "--namespace", "--queue", "--ledger"):
        parser.add_argument(name, required=True)
    parser.add_argument("--visibility", type=float, default=60.0)
    parser.add_argument("--concurrency", type=int, default=50, help="tasks and activities at a time")
    parser.add_argument("--timer-lease", type=float, default=None, help="seconds (default: the config's 30)")
    parser.add_argument("--die-after-dispatch", action="store_true")
    skew_clock_from_env()
    asyncio.run(_main(parser.parse_args()))


if __name__ == "__main__":
    main()
