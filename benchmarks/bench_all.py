#!/usr/bin/env python
"""Issue 9: ours side by side with the TypeScript original, DBOS and Celery, in one run.

What ``nox -s bench`` runs (``-- --quick`` for the smoke variant). Every step is a separate
process writing one JSON file into ``benchmarks/results/bench-<UTC stamp>-<commit>/``; then
``make_report.py`` turns that directory into ``benchmarks/REPORT.md`` and ``benchmarks/report/*.png``
(rerun it alone: ``python benchmarks/make_report.py benchmarks/results/bench-...``).

Order: ``--rounds`` rounds (quick 1, full 3) of the compared cases, ours and theirs alternating
(A B A B ...; every other round reversed, so that slow drift of the shared machine cancels):

    ours MeshCall (redis, postgres, NATS)     | Celery round trip (redis)
    ours MeshFlow (redis, postgres, NATS, SQLite) | TS original on redis
                                              | DBOS on postgres
                                              | TS original on postgres
                                              | DBOS on SQLite

then, once, the cases without a peer: backend operations per workflow and idle polling,
throughput with 1/2/4 worker processes, latency with 10k/100k finished workflows, memory per
10,000 suspended workflows (full run only; also the original's, scaled from 2,000), and a py-spy
profile of the worker during the redis 1-activity throughput case.

Backends are detected (a server that does not answer is left out, and the report says so). Ours
runs on PostgreSQL in a private database ``hmbench_ours_<random>`` (dropped at the end), so that
``pg_stat_database`` counts only our statements; every other run uses fresh namespaces, queues and
databases and removes them (see each script).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import (  # noqa: E402
    NATS_URL,
    POSTGRES_URL,
    REDIS_URL,
    RESULTS,
    create_database,
    drop_database,
    git_commit,
    log,
    machine,
    now_iso,
    package_versions,
    server_versions,
    uid,
    write_json,
)

PY = sys.executable


async def _reachable() -> dict[str, str | None]:
    """None when the server answers, else why not."""
    out: dict[str, str | None] = {}

    async def redis_ok() -> None:
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
        try:
            await client.ping()
        finally:
            await client.aclose()

    async def pg_ok() -> None:
        import psycopg

        conn = await psycopg.AsyncConnection.connect(POSTGRES_URL, connect_timeout=3)
        await conn.close()

    async def nats_ok() -> None:
        import nats

        client = await nats.connect(NATS_URL, connect_timeout=3, max_reconnect_attempts=0, allow_reconnect=False)
        await client.close()

    for name, probe in (("redis", redis_ok), ("postgres", pg_ok), ("nats", nats_ok)):
        try:
            await asyncio.wait_for(probe(), 8)
            out[name] = None
        except Exception as exc:
            out[name] = f"{type(exc).__name__}: {exc}"[:200]
    return out


class Runner:
    def __init__(self, out_dir: Path, quick: bool) -> None:
        self.out_dir = out_dir
        self.quick = quick
        self.steps: list[dict[str, Any]] = []

    def step(self, name: str, argv: list[str], timeout: float, *, side: str, cwd: Path | None = None) -> bool:
        """Run one step (a process writing ``<name>.json``); record its wall time and exit code."""
        target = self.out_dir / f"{name}.json"
        log(f"{name}: {' '.join(a if len(a) < 80 else a[:77] + '...' for a in argv[1:])}")
        load = round(os.getloadavg()[0], 2)
        begin = time.perf_counter()
        logfile = self.out_dir / "logs" / f"{name}.log"
        logfile.parent.mkdir(parents=True, exist_ok=True)
        with logfile.open("w") as handle:
            proc = subprocess.Popen(argv, cwd=str(cwd or HERE.parent), stdout=handle, stderr=subprocess.STDOUT)
            try:
                code = proc.wait(timeout)
            except BaseException as exc:  # timeout, Ctrl-C, SIGTERM: let the step clean up after itself first
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                if not isinstance(exc, subprocess.TimeoutExpired):
                    raise
                code = 124
        seconds = time.perf_counter() - begin
        ok = target.is_file()
        tail = ""
        if not ok or code not in (0, 1):
            tail = "\n".join(logfile.read_text(errors="replace").strip().splitlines()[-6:])
        self.steps.append({"name": name, "side": side, "seconds": round(seconds, 1), "exit": code, "json": ok,
                           "log_tail": tail, "load": load})
        log(f"{name}: exit {code} in {seconds:.0f} s{'' if ok else ' (no JSON)'}")
        return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="smoke variant, under ~5-7 minutes")
    parser.add_argument("--rounds", type=int, help="rounds of the compared cases (quick 1, full 3)")
    parser.add_argument("--ts-anchor", default="", help="the TS anchor directory with node_modules ('' = skip)")
    parser.add_argument("--no-ts", action="store_true")
    parser.add_argument("--no-peers", action="store_true", help="only ours")
    parser.add_argument("--no-extra", action="store_true", help="skip the cases without a peer")
    parser.add_argument("--out", help="results directory (default benchmarks/results/bench-<stamp>-<commit>)")
    parser.add_argument("--no-report", action="store_true")
    args = parser.parse_args(argv)

    def _terminate(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, _terminate)  # so that the finally below drops the private database
    quick = args.quick
    rounds = args.rounds or (1 if quick else 3)
    commit = git_commit() or "nocommit"
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H%M")
    out_dir = Path(args.out) if args.out else RESULTS / f"bench-{stamp}-{commit}{'-quick' if quick else ''}"
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    reach = asyncio.run(_reachable())
    log(f"results in {out_dir}; reachable: { {k: v is None for k, v in reach.items()} }")
    anchor = "" if args.no_ts or args.no_peers else args.ts_anchor
    ts_note = None
    if not anchor:
        ts_note = "not run: no TypeScript anchor given (nox passes it after `npm ci`)"
    elif anchor.startswith("!"):
        ts_note = f"not run: {anchor[1:]}"
        anchor = ""
    elif not (Path(anchor) / "node_modules" / "@hotmeshio" / "hotmesh").is_dir():
        ts_note = f"not run: {anchor} has no node_modules/@hotmeshio/hotmesh (npm ci failed?)"
        anchor = ""
    meta: dict[str, Any] = {
        "bench": "meta", "started": now_iso(), "quick": quick, "rounds": rounds, "commit": commit,
        "machine": machine(), "versions": package_versions(), "reachable": reach, "ts_anchor": anchor or None,
        "ts_note": ts_note,
    }
    meta["servers"] = asyncio.run(server_versions(
        REDIS_URL if reach["redis"] is None else None, POSTGRES_URL if reach["postgres"] is None else None,
        NATS_URL if reach["nats"] is None else None))
    if anchor:
        try:
            meta["ts_versions"] = json.loads(subprocess.run(
                ["node", "-e", "const p=(n)=>require(n+'/package.json').version;console.log(JSON.stringify("
                 "{hotmesh:p('@hotmeshio/hotmesh'),ioredis:p('ioredis'),pg:p('pg'),node:process.version}))"],
                cwd=anchor, capture_output=True, text=True, timeout=20).stdout)
        except Exception as exc:
            meta["ts_versions"] = {"error": str(exc)}
    write_json(out_dir / "meta.json", meta)

    pg_db = None
    ours_pg = None
    if reach["postgres"] is None:
        pg_db = uid("hmbench_ours")
        ours_pg = create_database(POSTGRES_URL, pg_db)
        meta["ours_postgres_url"] = ours_pg
        write_json(out_dir / "meta.json", meta)
    ours_urls = [u for u, ok in ((REDIS_URL, reach["redis"] is None), (ours_pg, ours_pg is not None),
                                 (NATS_URL, reach["nats"] is None)) if ok and u]
    # Mixed configurations (issue 8): NATS for stream and sub, the store (and search) elsewhere.
    mixes: list[str] = []
    if reach["nats"] is None and ours_pg:
        mixes.append(f"{NATS_URL} store={ours_pg} search={ours_pg}")
    if reach["nats"] is None and reach["redis"] is None:
        mixes.append(f"{NATS_URL} store={REDIS_URL}")
    meta["mixes"] = mixes
    write_json(out_dir / "meta.json", meta)
    run = Runner(out_dir, quick)
    q = ["--quick"] if quick else []
    try:
        for r in range(1, rounds + 1):
            ours: list[tuple[str, list[str], float]] = []
            if ours_urls:
                ours.append((f"r{r}-ours-meshcall", [PY, str(HERE / "meshcall_bench.py"), *q, "--repeat", "1",
                             *sum((["--url", u] for u in [*ours_urls, *mixes]), []),
                             "--json", str(out_dir / f"r{r}-ours-meshcall.json")], 900))
            ours.append((f"r{r}-ours-meshflow", [PY, str(HERE / "meshflow_bench.py"), *q, "--repeat", "1", "--suspended", "0",
                         *sum((["--url", u] for u in [*ours_urls, "sqlite", *mixes]), []),
                         "--json", str(out_dir / f"r{r}-ours-meshflow.json")], 1500))
            theirs: list[tuple[str, list[str], float]] = []
            if not args.no_peers:
                if reach["redis"] is None:
                    theirs.append((f"r{r}-celery", [PY, str(HERE / "peers" / "celery_bench.py"), *q, "--url", REDIS_URL,
                                                    "--json", str(out_dir / f"r{r}-celery.json")], 300))
                if anchor and reach["redis"] is None:
                    theirs.append((f"r{r}-ts-redis", [PY, str(HERE / "peers" / "ts_bench.py"), "--anchor", anchor,
                                                      "--backend", "redis", *q, "--json", str(out_dir / f"r{r}-ts-redis.json")],
                                   900))
                if reach["postgres"] is None:
                    theirs.append((f"r{r}-dbos-postgres", [PY, str(HERE / "peers" / "dbos_bench.py"), *q, "--url", POSTGRES_URL,
                                                           "--json", str(out_dir / f"r{r}-dbos-postgres.json")], 600))
                if anchor and reach["postgres"] is None:
                    theirs.append((f"r{r}-ts-postgres", [PY, str(HERE / "peers" / "ts_bench.py"), "--anchor", anchor,
                                                         "--backend", "postgres", *q,
                                                         *(["--cases", "meshcall,meshflow"] if quick else []),
                                                         "--json", str(out_dir / f"r{r}-ts-postgres.json")], 900))
                theirs.append((f"r{r}-dbos-sqlite", [PY, str(HERE / "peers" / "dbos_bench.py"), *q, "--url", "sqlite",
                                                     "--json", str(out_dir / f"r{r}-dbos-sqlite.json")], 600))
            # alternate: A B A B ...; reversed every other round
            order: list[tuple[str, tuple[str, list[str], float]]] = []
            for i in range(max(len(ours), len(theirs))):
                if i < len(ours):
                    order.append(("ours", ours[i]))
                if i < len(theirs):
                    order.append(("theirs", theirs[i]))
            if r % 2 == 0:
                order.reverse()
            for side, (name, cmd, timeout) in order:
                run.step(name, cmd, timeout, side=side)
        if not args.no_extra:
            x = [PY, str(HERE / "extra_bench.py")]
            n_ops = "10" if quick else "40"
            for label, url in (("redis", REDIS_URL if reach["redis"] is None else None), ("postgres", ours_pg),
                               ("nats", NATS_URL if reach["nats"] is None else None)):
                if url:
                    run.step(f"x-ops-{label}", [*x, "--case", "ops", "--url", url, "-n", n_ops,
                                                "--json", str(out_dir / f"x-ops-{label}.json")], 300, side="ours")
            scale_targets = [("redis", REDIS_URL if reach["redis"] is None else None, "1,2,4", "300"),
                             ("sqlite", "sqlite", "1,2,4", "50")]
            if not quick:
                scale_targets += [("postgres", ours_pg, "1,2", "50"),
                                  ("nats", NATS_URL if reach["nats"] is None else None, "1,2,4", "300")]
            for label, url, procs, inflight in scale_targets:
                if url:
                    run.step(f"x-scale-{label}", [*x, "--case", "scale", "--url", url, "--procs", procs,
                                                  "--inflight", "100" if quick else inflight, "--repeat", "1" if quick else "3",
                                                  "--json", str(out_dir / f"x-scale-{label}.json")], 900, side="ours")
            sizes = "1000,10000" if quick else "10000,100000"
            for label, url in (("redis", REDIS_URL if reach["redis"] is None else None), ("postgres", ours_pg)):
                if url and (label == "redis" or not quick):
                    run.step(f"x-history-{label}", [*x, "--case", "history", "--url", url, "--sizes", sizes,
                                                    "-n", "10" if quick else "30",
                                                    "--json", str(out_dir / f"x-history-{label}.json")], 1200, side="ours")
            if not quick:
                # redis only: an idle SQLite worker keeps polling, so its settle test runs into the 300 s cap
                for label, url in (("redis", REDIS_URL if reach["redis"] is None else None),):
                    if url:
                        run.step(f"x-memory-{label}", [*x, "--case", "memory", "--url", url, "--count", "10000",
                                                       "--json", str(out_dir / f"x-memory-{label}.json")], 900, side="ours")
                if anchor and reach["redis"] is None and not args.no_peers:
                    run.step("x-ts-suspended", [PY, str(HERE / "peers" / "ts_bench.py"), "--anchor", anchor, "--backend",
                                                "redis", "--suspended", "2000", "--cases", "",
                                                "--json", str(out_dir / "x-ts-suspended.json")], 900, side="theirs")
            if reach["redis"] is None:
                run.step("x-profile-redis", [*x, "--case", "profile", "--url", REDIS_URL, "--seconds", "8" if quick else "20",
                                             "--inflight", "300", "--json", str(out_dir / "x-profile-redis.json")],
                         300, side="ours")
    finally:
        if pg_db:
            try:
                drop_database(POSTGRES_URL, pg_db)
            except Exception as exc:
                log(f"could not drop {pg_db}: {exc}")
        meta["finished"] = now_iso()
        meta["seconds"] = round(time.perf_counter() - started, 1)
        meta["steps"] = run.steps
        meta["ours_postgres_url"] = ours_pg
        meta["machine_end_load"] = machine()["load_avg"]
        write_json(out_dir / "meta.json", meta)
    log(f"all steps done in {meta['seconds']:.0f} s")
    if not args.no_report:
        subprocess.run([PY, str(HERE / "make_report.py"), str(out_dir)], check=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
