"""A MeshFlow worker process for the kit's crash tests (not a public API).

Serves the kit's workflows (``hotmesh_conformance._flows``) on one task queue. Activities write a
ledger line per run and the store is wrapped so every applied transition is appended to the
commit ledger (see :mod:`hotmesh_conformance.ledger`). ``--die-after-dispatch`` is a crash point:
the process exits right after its first dispatch transition committed, before the task is acked.

``HOTMESH_KIT_CLOCK_SKEW=<seconds>`` skews this process's wall clock (``time.time``,
``time.time_ns``, ``datetime.now``/``utcnow``/``today``) by that many seconds, as a host whose
clock is off would be (test T-1); monotonic clocks are left alone.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as _dt
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from hotmesh import Connection, MeshFlow, load_config
from hotmesh.meshflow.worker import Worker
from hotmesh.providers import Role, default_registry
from hotmesh_conformance import _flows, ledger

SKEW_ENV = "HOTMESH_KIT_CLOCK_SKEW"


def skew_clock(seconds: float) -> None:
    """Move this process's wall clock by ``seconds`` (every module's view of it)."""
    real_time, real_time_ns = time.time, time.time_ns
    real_datetime: type[_dt.datetime] = _dt.datetime
    shift = _dt.timedelta(seconds=seconds)

    def skewed_time() -> float:
        return real_time() + seconds

    def skewed_time_ns() -> int:
        return real_time_ns() + int(seconds * 1e9)

    class SkewedDatetime(_dt.datetime):
        @classmethod
        def now(cls, tz: _dt.tzinfo | None = None) -> Any:
            return real_datetime.now(tz) + shift

        @classmethod
        def utcnow(cls) -> Any:
            return real_datetime.now(_dt.UTC).replace(tzinfo=None) + shift

        @classmethod
        def today(cls) -> Any:
            return real_datetime.now() + shift

    time.time, time.time_ns = skewed_time, skewed_time_ns
    # Modules imported from now on get the skewed class too; compiled ones notice that it is a
    # (layout-compatible) subclass and say so at import.
    warnings.filterwarnings("ignore", message="datetime.datetime size changed", category=RuntimeWarning)
    _dt.datetime = SkewedDatetime  # type: ignore[misc]
    for module in list(sys.modules.values()):  # names bound by ``from x import y`` before now
        for name, value in list(getattr(module, "__dict__", {}).items()):
            replacement = {id(real_time): skewed_time, id(real_time_ns): skewed_time_ns,
                           id(real_datetime): SkewedDatetime}.get(id(value))  # fmt: skip
            if replacement is not None and module is not _dt:
                try:
                    setattr(module, name, replacement)
                except (AttributeError, TypeError):
                    pass


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
    skew = float(os.environ.get(SKEW_ENV) or 0)
    if skew:
        skew_clock(skew)
    asyncio.run(_main(parser.parse_args()))


if __name__ == "__main__":
    main()
