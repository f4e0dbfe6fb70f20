"""A MeshFlow worker process for the kit's crash tests (not a public API).

Serves the kit's workflows (``hotmesh_conformance._flows``) on one task queue. Activities write a
ledger line per run (see ``_flows.LEDGER_ENV``). ``--die-after-dispatch`` is a crash point: the
process exits right after its first dispatch transition committed, before the task is acked.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from typing import Any

from hotmesh import MeshFlow, load_config
from hotmesh.meshflow.worker import Worker
from hotmesh_conformance import _flows


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
    os.environ[_flows.LEDGER_ENV] = args.ledger
    config = load_config(
        store=args.store, stream=args.stream, sub=args.sub, url=args.store, namespace=args.namespace, environ={}
    )
    if args.die_after_dispatch:
        _die_after_first_dispatch()
    worker = await MeshFlow.Worker.create(
        connection=config,
        task_queue=args.queue,
        workflow=_flows.ALL,
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
    parser.add_argument("--die-after-dispatch", action="store_true")
    asyncio.run(_main(parser.parse_args()))


if __name__ == "__main__":
    main()
