#!/usr/bin/env python
"""The TypeScript original (``@hotmeshio/hotmesh``, harness in ``../shared/anchors/hotmesh-ts``).

Runs the anchor's own scripts unchanged (``bench-meshcall.js``, ``bench-meshflow.js``) plus our
extensions in ``benchmarks/ts/`` (``bench-latency.js``: start->result of every shape;
``bench-suspended.js``: memory per suspended workflow), with ``NODE_PATH``/``TSBENCH_DIR`` pointing at
the anchor, one repetition per invocation, in a fresh namespace (``TSBENCH_NS``/``TSBENCH_CALL_NS``) and,
on PostgreSQL, a private database (``PG_URL``) that is dropped at the end; the Redis keys
``hmsh:<ns>:*`` (DB 1, the harness's default) are deleted at the end. The anchor writes its JSON to
``<anchor>/results/``; each file is read and removed again.

    python benchmarks/peers/ts_bench.py --anchor ../shared/anchors/hotmesh-ts --backend redis --quick --json /tmp/ts.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from _common import POSTGRES_URL, drop_database, log, now_iso, with_database, write_json  # noqa: E402

TS_DIR = HERE.parent / "ts"

SIZES = {
    # (quick, full) environment per script and backend
    ("meshcall", "redis"): ({"N_LAT": 100, "N_TPUT": 300, "WARMUP": 10}, {"N_LAT": 500, "N_TPUT": 3000, "WARMUP": 50}),
    ("meshcall", "postgres"): ({"N_LAT": 5, "N_TPUT": 30, "WARMUP": 2}, {"N_LAT": 30, "N_TPUT": 300, "WARMUP": 3}),
    ("meshflow", "redis"): (
        {"N_LAT": 20, "N_WF": 60, "START_CONC": 60, "N_MULTI": 30, "N_SIG": 5},
        {"N_LAT": 100, "N_WF": 300, "START_CONC": 300, "N_MULTI": 100, "N_SIG": 30},
    ),
    ("meshflow", "postgres"): (
        {"N_LAT": 4, "N_WF": 20, "START_CONC": 20, "N_MULTI": 10, "N_SIG": 3},
        {"N_LAT": 20, "N_WF": 100, "START_CONC": 50, "N_MULTI": 30, "N_SIG": 10},
    ),
    ("latency", "redis"): ({"N_LAT": 10, "WARMUP": 1}, {"N_LAT": 40, "WARMUP": 3}),
    ("latency", "postgres"): ({"N_LAT": 2, "WARMUP": 1, "SHAPES": "wfSeq5,wfPar5"},
                             {"N_LAT": 5, "WARMUP": 1, "SHAPES": "wfSeq5,wfPar5"}),
}


def _node(anchor: Path, argv: list[str], env: dict[str, str], timeout: float, cwd: Path) -> tuple[int, str, str]:
    """Run one script; once more after 10 s if the shared PostgreSQL refused a connection (too many clients)."""
    code, stdout, stderr = _node_once(anchor, argv, env, timeout, cwd)
    if code != 0 and ("too many clients" in stderr or "53300" in stderr):
        log(f"  {argv[0]}: the shared PostgreSQL said 'too many clients'; retrying once in 10 s")
        time.sleep(10)
        code, stdout, stderr = _node_once(anchor, argv, env, timeout, cwd)
    return code, stdout, stderr


def _node_once(anchor: Path, argv: list[str], env: dict[str, str], timeout: float, cwd: Path) -> tuple[int, str, str]:
    full_env = {**os.environ, **env, "NODE_PATH": str(anchor / "node_modules"), "TSBENCH_DIR": str(anchor),
                "HMSH_LOGLEVEL": "warn", "NODE_NO_WARNINGS": "1"}
    try:
        proc = subprocess.run(["node", *argv], cwd=str(cwd), env=full_env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        return 124, (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else (exc.stdout or ""), "timeout"
    return proc.returncode, proc.stdout, proc.stderr


def _take_result(anchor: Path, name: str) -> dict[str, Any] | None:
    path = anchor / "results" / f"{name}.json"
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    path.unlink()
    return data


def _last_json(stdout: str) -> dict[str, Any] | None:
    for line in reversed(stdout.strip().splitlines()):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                return None
    return None


def _purge_redis(ns_list: list[str], db: int = 1) -> int:
    import redis

    client = redis.Redis(host="127.0.0.1", port=6379, db=db)
    deleted = 0
    try:
        for ns in ns_list:
            batch = []
            for key in client.scan_iter(match=f"hmsh:{ns}:*", count=1000):
                batch.append(key)
                if len(batch) >= 500:
                    deleted += client.delete(*batch)
                    batch = []
            if batch:
                deleted += client.delete(*batch)
    finally:
        client.close()
    return deleted


def _meshcall(anchor: Path, backend: str, env: dict[str, str], idx: int, tag: str, out: dict[str, Any]) -> None:
    sizes = {k: str(v) for k, v in SIZES[("meshcall", backend)][idx].items()}
    code, _stdout, stderr = _node(anchor, ["bench-meshcall.js", backend], {**env, **sizes, "CONC": "50", "MAX_S": "170"},
                                  200, anchor)
    out["meshcall"] = _take_result(anchor, f"meshcall-{backend}-{tag}")
    if code != 0 or out["meshcall"] is None:
        out["errors"].append(f"bench-meshcall.js {backend} exited {code}: {stderr.strip()[-400:]}")
    log(f"  ts meshcall {backend}: {(out['meshcall'] or {}).get('median')}")


def _meshflow(anchor: Path, backend: str, env: dict[str, str], idx: int, tag: str, quick: bool,
              out: dict[str, Any]) -> None:
    """The anchor's phases; postgres split in two invocations in the full run (each under its 170 s cap)."""
    sizes = {k: str(v) for k, v in SIZES[("meshflow", backend)][idx].items()}
    groups = ["lat,tput1,seq5,par5,signal"] if (quick or backend == "redis") else ["lat,signal", "tput1,seq5,par5"]
    out["meshflow"] = []
    for gi, phases in enumerate(groups):
        gtag = f"{tag}g{gi}"
        code, _stdout, stderr = _node(anchor, ["bench-meshflow.js", backend],
                                      {**env, **sizes, "TAG": gtag, "PHASES": phases, "SERVER_STATS": "1", "MAX_S": "280"},
                                      320, anchor)
        got = _take_result(anchor, f"meshflow-{backend}-{gtag}")
        if got is not None:
            out["meshflow"].append(got)
        if code != 0 or got is None:
            out["errors"].append(f"bench-meshflow.js {backend} {phases} exited {code}: {stderr.strip()[-400:]}")
    log(f"  ts meshflow {backend}: {len(out['meshflow'])} result file(s)")


def run(anchor: Path, backend: str, quick: bool, suspended: int = 0,
        cases: tuple[str, ...] = ("meshcall", "meshflow", "latency")) -> dict[str, Any]:
    tag = f"hmb{uuid.uuid4().hex[:8]}"
    ns, ns_call = f"{tag}f", f"{tag}c"
    env = {"TSBENCH_NS": ns, "TSBENCH_CALL_NS": ns_call, "TAG": tag, "REPS": "1"}
    pg_db = None
    if backend == "postgres":
        pg_db = f"hmbench_ts_{tag}"
        env["PG_URL"] = with_database(POSTGRES_URL, pg_db)
    results_dir_existed = (anchor / "results").exists()
    out: dict[str, Any] = {"bench": "ts", "backend": backend, "date": now_iso(), "namespace": ns, "errors": []}
    idx = 0 if quick else 1
    try:
        if "meshcall" in cases:
            _meshcall(anchor, backend, env, idx, tag, out)
        if "meshflow" in cases:
            _meshflow(anchor, backend, env, idx, tag, quick, out)
        if "latency" in cases:  # our extension: every shape one at a time
            sizes = {k: str(v) for k, v in SIZES[("latency", backend)][idx].items()}
            code, stdout, stderr = _node(anchor, [str(TS_DIR / "bench-latency.js"), backend],
                                         {**env, **sizes, "CAP_S": "50"}, 200, TS_DIR)
            out["latency"] = _last_json(stdout)
            if code != 0 or out["latency"] is None:
                out["errors"].append(f"bench-latency.js {backend} exited {code}: {stderr.strip()[-400:]}")
        if suspended and backend == "redis":
            code, stdout, stderr = _node(anchor, [str(TS_DIR / "bench-suspended.js"), backend],
                                         {**env, "N_SUSP": str(suspended), "START_CONC": "100"}, 600, TS_DIR)
            out["suspended"] = _last_json(stdout)
            if code != 0 or out["suspended"] is None:
                out["errors"].append(f"bench-suspended.js exited {code}: {stderr.strip()[-400:]}")
    finally:
        try:
            out["redis_keys_deleted"] = _purge_redis([ns, ns_call])
        except Exception as exc:
            out["errors"].append(f"redis purge: {exc}")
        if pg_db:
            try:
                drop_database(POSTGRES_URL, pg_db)
            except Exception as exc:
                out["errors"].append(f"drop database {pg_db}: {exc}")
        if not results_dir_existed:
            try:
                (anchor / "results").rmdir()
            except OSError:
                pass
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--anchor", required=True)
    parser.add_argument("--backend", choices=("redis", "postgres"), required=True)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--suspended", type=int, default=0, help="wfSignal workflows for the memory row (redis; 0: skip)")
    parser.add_argument("--cases", default="meshcall,meshflow,latency", help="any of meshcall,meshflow,latency ('' = none)")
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    cases = tuple(c for c in args.cases.split(",") if c)
    result = run(Path(args.anchor).resolve(), args.backend, args.quick, args.suspended, cases)
    result["seconds"] = time.perf_counter() - started
    if args.json:
        write_json(args.json, result)
    else:
        print(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
