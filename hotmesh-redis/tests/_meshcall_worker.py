"""A MeshCall worker process for the fault tests (run as a script, not collected by pytest).

Serves ``--topic`` on ``--url``. Every callback run appends ``<call_id> <run_id> <pid>`` to
``--ledger`` (flushed and fsynced: the side effect is on disk before the result is written) and
returns ``{"id": call_id, "run": run_id}``, so a test can tell which run produced a result.
Prints ``ready`` once serving; stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import uuid

from hotmesh import MeshCall, load_config


def _append(ledger: str, line: str) -> None:
    with open(ledger, "a", encoding="utf-8") as handle:
        handle.write(line + "\n")
        handle.flush()
        os.fsync(handle.fileno())


async def _main(args: argparse.Namespace) -> None:
    config = load_config(url=args.url, namespace=args.namespace, environ={})

    async def work(call_id: str) -> dict[str, str]:
        run = uuid.uuid4().hex
        _append(args.ledger, f"{call_id} {run} {os.getpid()}")
        return {"id": call_id, "run": run}

    await MeshCall.connect(
        args.topic, work, connection=config, visibility_timeout=args.visibility, concurrency=args.concurrency
    )
    print("ready", flush=True)
    await MeshCall.serve(grace=1.0)


def main() -> None:
    parser = argparse.ArgumentParser()
    for name in ("--url", "--namespace", "--topic", "--ledger"):
        parser.add_argument(name, required=True)
    parser.add_argument("--visibility", type=float, default=3.0)
    parser.add_argument("--concurrency", type=int, default=10)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    asyncio.run(_main(parser.parse_args()))


if __name__ == "__main__":
    main()
