#!/usr/bin/env python
"""Turn one ``bench_all.py`` results directory into ``benchmarks/REPORT.md`` and ``benchmarks/report/*.png``.

Rerun alone at any time (nothing is measured here)::

    python benchmarks/make_report.py benchmarks/results/bench-2026-11-24T0930-abc1234
    python benchmarks/make_report.py DIR --out /tmp/REPORT.md --plots /tmp/plots

Every figure is the median over the rounds of the run, with the spread (min-max over rounds) in
brackets where there was more than one round; floors are the medians of the floors measured by our
scripts in the same run, and "× floor" divides a latency by its backend's bare round trip.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import report as tables  # noqa: E402  (the existing README tables, reused for the detail sections)

PG_LABEL = "postgresql://127.0.0.1:5432/<private-db>"
BACKENDS = ("redis", "postgres", "nats", "sqlite")


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------


def load(directory: Path) -> dict[str, Any]:
    meta = json.loads((directory / "meta.json").read_text())
    ours_pg = meta.get("ours_postgres_url")
    files: dict[str, Any] = {}
    for path in sorted(directory.glob("*.json")):
        if path.name == "meta.json":
            continue
        text = path.read_text()
        if ours_pg:
            text = text.replace(ours_pg, PG_LABEL)
        files[path.stem] = json.loads(text)
    return {"meta": meta, "files": files, "dir": directory}


def rounds_of(data: dict[str, Any], suffix: str) -> list[dict[str, Any]]:
    """r1-<suffix>, r2-<suffix>, ... in order."""
    found = [(int(m.group(1)), v) for k, v in data["files"].items() if (m := re.fullmatch(rf"r(\d+)-{suffix}", k))]
    return [v for _, v in sorted(found, key=lambda kv: kv[0])]


def backend_of(url: str) -> str:
    url = url.lower()
    head, *roles = url.split()
    if roles and all("=" in r for r in roles):  # a mixed configuration ("nats://… store=postgresql://…")
        return "+".join([backend_of(head), *(f"{r.split('=', 1)[0]}={backend_of(r.split('=', 1)[1])}" for r in roles)])
    for name in BACKENDS:
        if url.startswith(name):
            return name
    return url


def med(values: Sequence[float | None]) -> float | None:
    got = [v for v in values if v is not None]
    return statistics.median(got) if got else None


def spread(values: Sequence[float | None]) -> tuple[float, float] | None:
    got = [v for v in values if v is not None]
    return (min(got), max(got)) if len(got) > 1 else None


def fmt(value: float | None, digits: int | None = None) -> str:
    if value is None:
        return "–"
    if digits is None:
        digits = 0 if abs(value) >= 100 else 1 if abs(value) >= 10 else 2
    return f"{value:,.{digits}f}"


def cell(values: Sequence[float | None], digits: int | None = None) -> str:
    m = med(values)
    if m is None:
        return "–"
    s = spread(values)
    return fmt(m, digits) + (f" ({fmt(s[0], digits)}–{fmt(s[1], digits)})" if s else "")


def dig(obj: Any, *path: Any) -> Any:
    for key in path:
        if obj is None:
            return None
        if isinstance(obj, list):
            obj = obj[key] if isinstance(key, int) and len(obj) > key else None
        else:
            obj = obj.get(key)
    return obj


# ---------------------------------------------------------------------------------------------
# Extraction: one dict per (system, backend) of lists over rounds
# ---------------------------------------------------------------------------------------------


def floors(data: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    out: dict[str, dict[str, list[float]]] = {}
    for key, report in data["files"].items():
        if not key.startswith("r") or "ours-" not in key:
            continue
        for url, found in report.get("floors", {}).items():
            if not isinstance(found, dict) or "error" in found:
                continue
            entry = out.setdefault(backend_of(url), {})
            for kind, stats in found.items():
                if isinstance(stats, dict) and stats.get("p50_ms") is not None:
                    entry.setdefault(kind, []).append(stats["p50_ms"])
                    entry.setdefault(f"{kind}_what", []).append(stats.get("what"))  # type: ignore[arg-type]
    return {b: {k: (med(v) if not k.endswith("_what") else v[0]) for k, v in e.items()} for b, e in out.items()}  # type: ignore[misc]


def ours_meshcall(data: dict[str, Any]) -> dict[str, dict[str, list[Any]]]:
    out: dict[str, dict[str, list[Any]]] = {}
    for report in rounds_of(data, "ours-meshcall"):
        for result in report.get("results", []):
            e = out.setdefault(backend_of(result["url"]), {"p50": [], "p95": [], "p99": [], "cps": [], "local_p50": [],
                                                           "local_cps": [], "wire": [], "errors": []})
            for run in result.get("runs", []):
                if run.get("remote"):
                    e["p50"].append(run["remote"]["p50_ms"])
                    e["p99"].append(run["remote"]["p99_ms"])
                if run.get("remote_throughput"):
                    e["cps"].append(run["remote_throughput"]["calls_per_s"])
                if run.get("local"):
                    e["local_p50"].append(run["local"]["p50_ms"])
                if run.get("local_throughput"):
                    e["local_cps"].append(run["local_throughput"]["calls_per_s"])
            rt = result.get("round_trips") or {}
            wire = rt.get("wire")
            if wire:
                e["wire"].append(wire["caller"]["total_ops"]["round trips"] + wire["worker"]["total_ops"]["round trips"])
            if result.get("error"):
                e["errors"].append(result["error"])
    return out


def ts_rounds(data: dict[str, Any], backend: str) -> list[dict[str, Any]]:
    return rounds_of(data, f"ts-{backend}")


def ts_meshcall(data: dict[str, Any], backend: str) -> dict[str, list[Any]]:
    e: dict[str, list[Any]] = {"p50": [], "p95": [], "p99": [], "cps": [], "ops": [], "idle": [], "conc": []}
    for r in ts_rounds(data, backend):
        m = dig(r, "meshcall", "median")
        if not m:
            continue
        e["p50"].append(m.get("p50_ms"))
        e["p95"].append(m.get("p95_ms"))
        e["p99"].append(m.get("p99_ms"))
        e["cps"].append(m.get("calls_per_s"))
        e["ops"].append(m.get("redis_cmds_per_call") if backend == "redis" else m.get("sql_per_call"))
        idle = dig(r, "meshcall", "idle_per_second")
        e["idle"].append((idle or {}).get("redis" if backend == "redis" else "sql"))
        e["conc"].append(dig(r, "meshcall", "params", "CONC"))
    return e


def celery(data: dict[str, Any]) -> dict[str, list[Any]]:
    e: dict[str, list[Any]] = {"p50": [], "p95": [], "p99": [], "cps": [], "ops": [], "cpu": [], "idle": []}
    for r in rounds_of(data, "celery"):
        for run in r.get("runs", []):
            e["p50"].append(run["latency"]["p50_ms"])
            e["p95"].append(run["latency"]["p95_ms"])
            e["p99"].append(run["latency"]["p99_ms"])
            e["cps"].append(run["throughput"]["calls_per_s"])
            c, w = run["throughput"].get("cpu_ms_per_call_client"), run["throughput"].get("cpu_ms_per_call_worker")
            e["cpu"].append(c + w if c is not None and w is not None else None)
        e["ops"].append(dig(r, "server_ops", "per_call_net"))
    return e


SHAPES = ("wf_one", "wf_seq5", "wf_par5")
TS_SHAPES = {"wf_one": "wfOne", "wf_seq5": "wfSeq5", "wf_par5": "wfPar5"}
TS_TPUT = {"wf_one": "tput1", "wf_seq5": "seq5", "wf_par5": "par5"}


def _flow_entry() -> dict[str, list[Any]]:
    keys = [f"{k}_{s}" for s in SHAPES for k in ("p50", "p95", "wfs")] + ["sig_p50", "sig_p95", "inflight", "wire", "waits",
                                                                         "prov", "wire_extra"]
    return {k: [] for k in keys}


def ours_meshflow(data: dict[str, Any], where: str = "remote") -> dict[str, dict[str, list[Any]]]:
    out: dict[str, dict[str, list[Any]]] = {}
    for report in rounds_of(data, "ours-meshflow"):
        for result in report.get("results", []):
            e = out.setdefault(backend_of(result["url"]), _flow_entry())
            for run in result.get("runs", []):
                got = run.get(where)
                if not got:
                    continue
                for s in SHAPES:
                    e[f"p50_{s}"].append(dig(got, f"lat_{s}", "p50_ms"))
                    e[f"p95_{s}"].append(dig(got, f"lat_{s}", "p95_ms"))
                    e[f"wfs_{s}"].append(dig(got, f"tput_{s}", "wf_per_s"))
                e["inflight"].append(dig(got, "tput_wf_one", "inflight"))
                e["sig_p50"].append(dig(got, "signal", "p50_ms"))
                e["sig_p95"].append(dig(got, "signal", "p95_ms"))
            summary = result.get("round_trip_summary")
            if summary:
                e["wire"].append(dig(summary, "per_workflow_1act", "wire_ops"))
                e["waits"].append(dig(summary, "per_workflow_1act", "wire_waits"))
                e["prov"].append(dig(summary, "per_workflow_1act", "provider_ops"))
                e["wire_extra"].append(dig(summary, "per_extra_activity", "wire_ops"))
    return out


def ts_meshflow(data: dict[str, Any], backend: str) -> dict[str, list[Any]]:
    e = _flow_entry()
    e["ops"], e["ops_rt"], e["server_ops"], e["idle"] = [], [], [], []
    for r in ts_rounds(data, backend):
        phases: dict[str, Any] = {}
        for f in r.get("meshflow") or []:
            phases.update(f.get("phases", {}))
            idle = dig(f, "idle_per_second")
            if idle:
                e["idle"].append(idle.get("redis" if backend == "redis" else "sql"))
        lat = dig(phases, "lat", "reps", 0)
        if lat:
            e["p50_wf_one"].append(lat.get("p50_ms"))
            e["p95_wf_one"].append(lat.get("p95_ms"))
            cost = lat.get("cost", {})
            e["ops"].append(cost.get("redis_per_unit") if backend == "redis" else cost.get("sql_per_unit"))
            e["ops_rt"].append(cost.get("redis_round_trips_per_unit") if backend == "redis" else cost.get("sql_per_unit"))
        shapes = dig(r, "latency", "shapes") or {}
        for s in ("wf_seq5", "wf_par5"):
            got = shapes.get(TS_SHAPES[s])
            if got:
                e[f"p50_{s}"].append(got.get("p50_ms"))
                e[f"p95_{s}"].append(got.get("p95_ms"))
        for s in SHAPES:
            rep = dig(phases, TS_TPUT[s], "reps", 0)
            if rep:
                e[f"wfs_{s}"].append(rep.get("wf_per_s"))
                if s == "wf_one":
                    e["inflight"].append(rep.get("start_conc"))
                    server = rep.get("server") or {}
                    e["server_ops"].append(server.get("redis_server_cmds_per_unit") if backend == "redis"
                                           else server.get("xact_commit_per_unit"))
        sig = dig(phases, "signal", "reps", 0, "signal_to_result")
        if sig:
            e["sig_p50"].append(sig.get("p50_ms"))
            e["sig_p95"].append(sig.get("p95_ms"))
    return e


def dbos(data: dict[str, Any], backend: str, mode: str) -> dict[str, list[Any]]:
    e = _flow_entry()
    e["commits"], e["idle_commits"], e["rows"] = [], [], []
    for r in rounds_of(data, f"dbos-{backend}"):
        for run in r.get("runs", []):
            for s in SHAPES:
                e[f"p50_{s}"].append(dig(run, f"{mode}_lat_{s}", "p50_ms"))
                e[f"p95_{s}"].append(dig(run, f"{mode}_lat_{s}", "p95_ms"))
                e[f"wfs_{s}"].append(dig(run, f"{mode}_tput_{s}", "wf_per_s"))
            e["inflight"].append(dig(run, f"{mode}_tput_wf_one", "inflight"))
        e["commits"].append(dig(r, "server_ops", mode, "xact_commit_per_wf_net"))
        e["idle_commits"].append(dig(r, "server_ops", mode, "idle_xact_commit_per_s"))
        e["rows"].append(dig(r, "server_ops", mode, "rows_written_per_wf"))
    return e


def extra(data: dict[str, Any], prefix: str) -> dict[str, Any]:
    return {k.removeprefix(prefix): v for k, v in data["files"].items() if k.startswith(prefix)}


# ---------------------------------------------------------------------------------------------
# Plots
# ---------------------------------------------------------------------------------------------


def _bars(ax: Any, labels: list[str], values: list[list[float | None]], title: str, ylabel: str, log: bool) -> None:
    xs = range(len(labels))
    meds = [med(v) or 0 for v in values]
    lo = [(m - (spread(v) or (m, m))[0]) for m, v in zip(meds, values, strict=True)]
    hi = [((spread(v) or (m, m))[1] - m) for m, v in zip(meds, values, strict=True)]
    colors = ["#1f77b4" if lab.startswith("ours") else "#d62728" if lab.startswith("TS") else "#7f7f7f" for lab in labels]
    ax.bar(xs, meds, yerr=[lo, hi], color=colors, capsize=3)
    ax.set_xticks(list(xs))
    ax.set_xticklabels(labels, rotation=35, ha="right", fontsize=8)
    ax.set_title(title, fontsize=10)
    ax.set_ylabel(ylabel)
    if log and any(meds):
        ax.set_yscale("log")
        ax.set_ylim(bottom=min(m for m in meds if m) / 4, top=max(meds) * 2.5)
    for x, m in zip(xs, meds, strict=True):
        if m:
            ax.annotate(fmt(m), (x, m), ha="center", va="bottom", fontsize=7)


def plots(series: dict[str, Any], out_dir: Path) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    out_dir.mkdir(parents=True, exist_ok=True)
    made = []

    def save(fig: Any, name: str) -> None:
        fig.tight_layout()
        fig.savefig(out_dir / name, dpi=110)
        plt.close(fig)
        made.append(name)

    mc = series["meshcall"]
    if mc:
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
        _bars(axes[0], [k for k, _ in mc], [v["p50"] for _, v in mc], "MeshCall exec / task round trip: p50 (one at a time)",
              "ms (log)", True)
        _bars(axes[1], [k for k, _ in mc], [v["cps"] for _, v in mc], "calls/s at concurrency 50", "calls/s (log)", True)
        save(fig, "meshcall.png")
    mf = series["meshflow"]
    if mf:
        fig, axes = plt.subplots(2, 3, figsize=(14, 7.5))
        names = {"wf_one": "1 activity", "wf_seq5": "5 sequential", "wf_par5": "gather of 5"}
        for i, s in enumerate(SHAPES):
            _bars(axes[0][i], [k for k, _ in mf], [v[f"p50_{s}"] for _, v in mf], f"{names[s]}: start→result p50",
                  "ms (log)", True)
            _bars(axes[1][i], [k for k, _ in mf], [v[f"wfs_{s}"] for _, v in mf], f"{names[s]}: workflows/s", "wf/s (log)",
                  True)
        save(fig, "meshflow.png")
    scale = series["scale"]
    if scale:
        fig, ax = plt.subplots(figsize=(6, 4))
        for label, pts in scale.items():
            ax.plot([p["procs"] for p in pts], [p["wf_per_s"] for p in pts], marker="o", label=label)
        ax.set_xlabel("worker processes")
        ax.set_ylabel("1-activity workflows/s")
        ax.set_title("ours: throughput vs worker processes (2 cores)", fontsize=10)
        ax.legend()
        save(fig, "scaling.png")
    hist = series["history"]
    if hist:
        fig, ax = plt.subplots(figsize=(6, 4))
        for label, pts in hist.items():
            xs = [max(p["finished"], 1) for p in pts]
            ax.plot(xs, [p["p50_ms"] for p in pts], marker="o", label=f"{label} p50")
            ax.plot(xs, [p["p95_ms"] for p in pts], marker="x", linestyle="--", label=f"{label} p95")
        ax.set_xscale("log")
        ax.set_xlabel("finished workflows already in the namespace (0 plotted at 1)")
        ax.set_ylabel("1-activity start→result, ms")
        ax.set_title("ours: latency vs history size", fontsize=10)
        ax.legend(fontsize=8)
        save(fig, "history.png")
    ops = series["ops"]
    if ops:
        fig, ax = plt.subplots(figsize=(9, 4))
        _bars(ax, [k for k, _ in ops], [[v] for _, v in ops], "backend operations per 1-activity workflow", "ops (log)", True)
        save(fig, "ops.png")
    return made


# ---------------------------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------------------------


def verdict(value: float | None, target: float, *, at_most: bool) -> str:
    if value is None:
        return "not measured"
    ok = value <= target if at_most else value >= target
    if ok:
        return "**met**"
    if at_most:
        return f"**missed** by {value / target:.1f}× ({fmt(value)} vs ≤ {fmt(target)})"
    return f"**missed**: {value / target:.0%} of the target ({fmt(value)} vs ≥ {fmt(target)})"


def build(data: dict[str, Any], plot_dir: Path, plot_rel: str) -> str:
    meta = data["meta"]
    fl = floors(data)
    rtt: Callable[[str], float | None] = lambda b: (fl.get(b) or {}).get("rtt")  # noqa: E731
    omc = ours_meshcall(data)
    cel = celery(data)
    tsmc = {b: ts_meshcall(data, b) for b in ("redis", "postgres")}
    omf = ours_meshflow(data, "remote")
    omf_local = ours_meshflow(data, "local")
    tsmf = {b: ts_meshflow(data, b) for b in ("redis", "postgres")}
    dbo = {(b, m): dbos(data, b, m) for b in ("postgres", "sqlite") for m in ("direct", "queue")}
    ops_x = extra(data, "x-ops-")
    scale_x = extra(data, "x-scale-")
    hist_x = extra(data, "x-history-")
    mem_x = extra(data, "x-memory-")
    prof = data["files"].get("x-profile-redis")
    ts_susp = data["files"].get("x-ts-suspended")
    rounds = meta.get("rounds")
    L: list[str] = []
    w = L.append

    # ---- header
    kind = "quick (smoke) variant" if meta.get("quick") else "full variant"
    w("# HotMesh for Python: benchmarks side by side (issue 9)")
    w("")
    w(f"Generated by `benchmarks/make_report.py` from `{_rel(data['dir'])}` — `nox -s bench{' -- --quick' if meta.get('quick') else ''}` "
      f"({kind}, {rounds} round(s) of the compared cases, ours and the peers alternating A B A B …, every other round "
      f"reversed), started {meta.get('started')}, finished {meta.get('finished')} ({fmt((meta.get('seconds') or 0) / 60, 1)} min). "
      f"Rerun the report alone: `python benchmarks/make_report.py {_rel(data['dir'])}`.")
    w("")
    m = meta.get("machine", {})
    w(f"**Machine**: {m.get('cpu')}, **{m.get('cpus')} cores**, {m.get('memory')}, {m.get('platform')}; Python {m.get('python')}, "
      f"Node {m.get('node')}. Load average at start {m.get('load_avg')}, at end {meta.get('machine_end_load')}.")
    w("")
    w("**Noise warning**: this machine has 2 cores and was shared during the run: other agents ran their test suites "
      "against the same Redis, PostgreSQL and NATS servers and in the same checkout. Timings moved by 30-100% between "
      "repeats in earlier runs; read the ratios, the floor multiples and the exact operation counts before the "
      "absolute milliseconds, and compare only figures from the same run. The spread (min–max over rounds) is in brackets.")
    w("")
    srv = meta.get("servers", {})
    vers = meta.get("versions", {})
    tsv = meta.get("ts_versions") or {}
    w("**Versions**: " + ", ".join(f"{k} {v}" for k, v in vers.items() if v) + ". "
      f"Servers: Redis {srv.get('redis')}, PostgreSQL {srv.get('postgres')} ({_pg_settings(srv)}), NATS {srv.get('nats')} "
      f"(JetStream {'on' if srv.get('nats_jetstream') else 'off?'}). "
      + (f"TypeScript original: @hotmeshio/hotmesh {tsv.get('hotmesh')}, ioredis {tsv.get('ioredis')}, pg {tsv.get('pg')}, "
         f"node {tsv.get('node')}." if tsv and "error" not in tsv else ""))
    w("")
    w(f"Commit measured: `{meta.get('commit')}` (editable checkout; other sessions kept committing during the run).")
    w("")
    notes = []
    unreachable = [k for k, v in (meta.get("reachable") or {}).items() if v]
    if unreachable:
        notes.append("unreachable, not run: " + ", ".join(f"{k} ({meta['reachable'][k]})" for k in unreachable))
    if meta.get("ts_note"):
        notes.append(f"TypeScript original {meta['ts_note']}")
    if srv.get("pg_stat_statements") is False:
        notes.append("`pg_stat_statements` is not installed on the shared PostgreSQL (not in shared_preload_libraries): "
                     "statement counts come from `pg_stat_database.xact_commit` (server) and the driver-level counters (client)")
    load0, load1 = (m.get("load_avg") or [None])[0], (meta.get("machine_end_load") or [None])[0]
    if load0 is not None and load1 is not None and abs(load0 - load1) >= 2:
        notes.append(f"the machine's load changed during the run (1-minute load average {load0} at the start, {load1} at "
                     "the end): the rounds and the once-only cases after them (scaling, history, memory, profile) did not "
                     "see the same machine, so compare rows within one table section, not across sections")
    load_steps = [s for s in meta.get("steps", []) if s.get("load") is not None]
    if load_steps:
        notes.append("1-minute load average at the start of each step: " + ", ".join(
            f"{s['name']} {s['load']}" for s in load_steps))
    failed = [s for s in meta.get("steps", []) if not s.get("json")]
    for s in failed:
        notes.append(f"step `{s['name']}` produced no result (exit {s['exit']}): {s.get('log_tail', '')[-300:]!r}")
    if notes:
        w("**Not run / caveats**:")
        w("")
        for n in notes:
            w(f"- {n}")
        w("")
    w("Columns: *ours* = this repository (worker in another process unless marked), *TS* = the original "
      "`@hotmeshio/hotmesh` through its anchor harness (`bench-meshcall.js`, `bench-meshflow.js`) plus our "
      "`benchmarks/ts/bench-latency.js` for the 5-step shapes, *DBOS* = `dbos` on its system database (direct = `await wf(x)` "
      "in process; queue = `enqueue_async` + `get_result`, queue and result polled every 10 ms, DBOS's defaults are 1 s), "
      "*Celery* = `echo.delay(x).get()` with a prefork `celery worker`, Redis broker and result backend.")
    w("")

    # ---- headline
    w("## Headline (medians over the rounds, worker in another process)")
    w("")
    rm, rt_, cl = omc.get("redis", {}), tsmc["redis"], cel
    w(f"- **MeshCall on Redis**: ours p50 {fmt(med(rm.get('p50', [])))} ms, {fmt(med(rm.get('cps', [])))} calls/s @50 — "
      f"TS original {fmt(med(rt_['p50']))} ms, {fmt(med(rt_['cps']))} calls/s — Celery {fmt(med(cl['p50']))} ms, "
      f"{fmt(med(cl['cps']))} calls/s.")
    pm, pt = omc.get("postgres", {}), tsmc["postgres"]
    w(f"- **MeshCall on PostgreSQL**: ours p50 {fmt(med(pm.get('p50', [])))} ms, {fmt(med(pm.get('cps', [])))} calls/s — "
      f"TS original {fmt(med(pt['p50']))} ms, {fmt(med(pt['cps']))} calls/s.")
    for b in ("redis", "postgres", "sqlite"):
        o = omf.get(b)
        if not o:
            continue
        bits = [f"ours {fmt(med(o['p50_wf_one']))} ms, {fmt(med(o['wfs_wf_one']))} wf/s"]
        if b in tsmf and tsmf[b]["p50_wf_one"]:
            bits.append(f"TS original {fmt(med(tsmf[b]['p50_wf_one']))} ms, {fmt(med(tsmf[b]['wfs_wf_one']))} wf/s")
        for mode in ("direct", "queue"):
            d = dbo.get((b, mode))
            if d and any(d["p50_wf_one"]):
                bits.append(f"DBOS {mode} {fmt(med(d['p50_wf_one']))} ms, {fmt(med(d['wfs_wf_one']))} wf/s")
        w(f"- **1-activity workflow on {b}** (start→result p50, workflows/s): " + " — ".join(bits) + ".")
    w("")

    # ---- floors
    w("## Floors (bare drivers, measured in the same run by `floors.py`; p50 ms)")
    w("")
    w("| backend | round trip | p50 ms | wake-up | p50 ms |")
    w("|---|---|---:|---|---:|")
    for b in BACKENDS:
        f = fl.get(b)
        if f:
            w(f"| {b} | {f.get('rtt_what') or '–'} | {fmt(f.get('rtt'), 3)} | {f.get('wake_what') or '–'} | {fmt(f.get('wake'), 3)} |")
    w("")

    # ---- targets
    w("## Issue 9 targets: met or missed")
    w("")
    w("| target | measured (median over rounds) | verdict |")
    w("|---|---|---|")
    r_mc, p_mc, n_mc = omc.get("redis", {}), omc.get("postgres", {}), omc.get("nats", {})
    r_mf, p_mf, n_mf = omf.get("redis", {}), omf.get("postgres", {}), omf.get("nats", {})
    w(f"| Redis MeshCall.exec p50 ≤ 1.5 ms | {fmt(med(r_mc.get('p50', [])))} ms | {verdict(med(r_mc.get('p50', [])), 1.5, at_most=True)} |")
    w(f"| Redis ≥ 2,000 calls/s | {fmt(med(r_mc.get('cps', [])))} calls/s @50 | {verdict(med(r_mc.get('cps', [])), 2000, at_most=False)} |")
    w(f"| Redis 1-activity workflow p50 ≤ 5 ms | {fmt(med(r_mf.get('p50_wf_one', [])))} ms | "
      f"{verdict(med(r_mf.get('p50_wf_one', [])), 5, at_most=True)} |")
    w(f"| Redis ≥ 500 workflows/s | {fmt(med(r_mf.get('wfs_wf_one', [])))} wf/s | {verdict(med(r_mf.get('wfs_wf_one', [])), 500, at_most=False)} |")
    ts_r, ts_f = tsmc["redis"], tsmf["redis"]
    if med(ts_r["p50"]) and med(r_mc.get("p50", [])):
        a, b = med(ts_r["p50"]) / med(r_mc["p50"]), (med(r_mc["cps"]) or 0) / (med(ts_r["cps"]) or 1)
        w(f"| Redis MeshCall: ten to twenty times the original | exec p50 {a:.1f}× lower, calls/s {b:.1f}× higher | "
          f"{'**met**' if min(a, b) >= 10 else f'**missed**: the weaker ratio is {min(a, b):.1f}× (target ≥ 10×)'} |")
    if med(ts_f["p50_wf_one"]) and med(r_mf.get("p50_wf_one", [])) and med(ts_f["wfs_wf_one"]):
        a = med(ts_f["p50_wf_one"]) / med(r_mf["p50_wf_one"])
        b = (med(r_mf.get("wfs_wf_one", [])) or 0) / med(ts_f["wfs_wf_one"])
        w(f"| Redis 1-activity workflow: ten to twenty times the original | p50 {a:.1f}× lower, wf/s {b:.1f}× higher | "
          f"{'**met**' if min(a, b) >= 10 else f'**missed**: the weaker ratio is {min(a, b):.1f}× (target ≥ 10×)'} |")
    w(f"| PostgreSQL MeshCall.exec p50 ≤ 3 ms | {fmt(med(p_mc.get('p50', [])))} ms | {verdict(med(p_mc.get('p50', [])), 3, at_most=True)} |")
    w(f"| PostgreSQL 1-activity p50 ≤ 10 ms | {fmt(med(p_mf.get('p50_wf_one', [])))} ms | "
      f"{verdict(med(p_mf.get('p50_wf_one', [])), 10, at_most=True)} |")
    w(f"| PostgreSQL ≥ 200 workflows/s | {fmt(med(p_mf.get('wfs_wf_one', [])))} wf/s ({fmt(med(p_mf.get('inflight', [])), 0)} in flight) | "
      f"{verdict(med(p_mf.get('wfs_wf_one', [])), 200, at_most=False)} |")
    dq = med(dbo[("postgres", "queue")]["wfs_wf_one"])
    w(f"| PostgreSQL ≥ DBOS queue wf/s (1 step) | ours {fmt(med(p_mf.get('wfs_wf_one', [])))} vs DBOS queue {fmt(dq)} "
      f"(DBOS direct {fmt(med(dbo[('postgres', 'direct')]['wfs_wf_one']))}) | "
      f"{verdict(med(p_mf.get('wfs_wf_one', [])), dq, at_most=False) if dq else 'not measured'} |")
    for what, nv, rv, lower in (("exec p50", med(n_mc.get("p50", [])), med(r_mc.get("p50", [])), True),
                                ("1-act wf p50", med(n_mf.get("p50_wf_one", [])), med(r_mf.get("p50_wf_one", [])), True),
                                ("1-act wf/s", med(n_mf.get("wfs_wf_one", [])), med(r_mf.get("wfs_wf_one", [])), False)):
        if nv and rv:
            ratio = nv / rv if lower else rv / nv
            w(f"| NATS within 1.5× of Redis ({what}) | NATS {fmt(nv)} vs Redis {fmt(rv)}: {ratio:.2f}× | "
              f"{verdict(ratio, 1.5, at_most=True)} |")
    for b, e in (("redis", r_mf), ("postgres", p_mf), ("nats", n_mf)):
        wire = med(e.get("wire", []))
        w(f"| ≤ 12 backend round trips per 1-activity workflow ({b}) | {fmt(wire, 1)} wire round trips "
          f"(+ {fmt(med(e.get('waits', [])), 1)} blocked reads woken by the backend) | {verdict(wire, 12, at_most=True)} |")
    idle_bits = []
    for b in ("redis", "postgres", "nats"):
        got = dig(ops_x.get(b), "idle_polling", "per_s_total")
        if got is not None:
            idle_bits.append(f"{b} {fmt(got, 1)}/s")
    if idle_bits:
        w(f"| none of them idle polling on the hot path | the round trips above are issued per workflow; an idle worker sends "
          f"{', '.join(idle_bits)} requests (blocked reads timing out + scheduler; see below) | "
          f"**met** (no polling in the per-workflow path: every wait is a blocked read) |")
    sq_pts = dig(scale_x.get("sqlite"), "points") or []
    best = max((p["wf_per_s"] for p in sq_pts if p["procs"] >= 2), default=None)
    sq_txt = ", ".join(f"{p['procs']} proc: {fmt(p['wf_per_s'])}" for p in sq_pts)
    w(f"| Embedded SQLite ≥ 300 wf/s from several processes | best of 2/4 worker processes: {fmt(best)} wf/s "
      f"({sq_txt}) | {verdict(best, 300, at_most=False)} |")
    w("")

    # ---- why
    busy = None
    if prof and prof.get("samples"):
        busy = 100 - 100 * prof.get("idle_in_epoll_samples", 0) / prof["samples"]
    pg_commits = dig(ops_x.get("postgres"), "per_wf_net")
    w("Why the misses, and what would close them (from this run's counts, floors and profile):")
    w("")
    r_wire, p_wire, n_wire = med(r_mf.get("wire", [])), med(p_mf.get("wire", [])), med(n_mf.get("wire", []))
    w(f"- **Redis latency** (exec {fmt(med(r_mc.get('p50', [])))} ms = "
      f"{fmt((med(r_mc.get('p50', [])) or 0) / (rtt('redis') or 1), 0)}× the PING floor; 1-activity workflow "
      f"{fmt(med(r_mf.get('p50_wf_one', [])))} ms): a call is {fmt(med(r_mc.get('wire', [])), 1)} wire round trips plus two "
      f"wake-ups in series, a 1-activity workflow {fmt(r_wire, 1)} round trips plus {fmt(med(r_mf.get('waits', [])), 1)} blocked "
      "reads (three tasks, each woken through the stream). On a quiet machine each round trip is ~0.1 ms and each wake-up "
      "~0.2-0.5 ms, so most of the rest is Python per task on 2 shared cores. Already folded: each task's ack and the "
      "outcome's announcement ride in its last transition (Store rules 6b, 6c), the first task takes its job from the "
      "message. What is left: the three wake-ups in series and less Python per task (next bullet); "
      "`client.workflow.execute` saves the result's job read.")
    w(f"- **Redis throughput** ({fmt(med(r_mc.get('cps', [])))} calls/s, {fmt(med(r_mf.get('wfs_wf_one', [])))} wf/s): CPU-bound. "
      + (f"The worker was {fmt(busy, 0)}% busy in the profile (not waiting on Redis); " if busy is not None else "")
      + "the client, the worker, the Redis server and other users share 2 cores. The profile's top items (socket writes = "
      "one syscall per command, redis-py's per-command overhead, the transition's JSON + Lua call) are the levers: "
      "pipelining the commands that leave a task together, and a leaner client path for the three hot scripts.")
    w(f"- **PostgreSQL** (exec {fmt(med(p_mc.get('p50', [])))} ms, workflow {fmt(med(p_mf.get('p50_wf_one', [])))} ms, "
      f"{fmt(med(p_mf.get('wfs_wf_one', [])))} wf/s): {fmt(p_wire, 1)} statements per workflow"
      + (f", {fmt(pg_commits, 1)} commits counted by the server (which also counts the claiming reads that the wire "
         "count lists apart as blocked reads, and the scheduler's)" if pg_commits is not None else "")
      + ", each write a durable commit (fsync, synchronous_commit=on) and each task woken by NOTIFY → LISTEN "
      f"(floor {fmt((fl.get('postgres') or {}).get('wake'), 2)} ms in this run). What closes it: fewer commits in series per "
      "task (the ack DELETE and pg_notify already ride in the transition's statement: what is left is the claiming read "
      "of each task), and more in flight (the quick run uses 20; the roles of a process now share one pool, so the "
      "shared server's max_connections=100 allows more).")
    if n_wire and r_wire:
        w(f"- **NATS vs Redis**: {fmt(n_wire, 1)} NATS requests per 1-activity workflow against {fmt(r_wire, 1)} Redis commands: "
          "the store starts each compare-and-set from the entry it last saw (one request when it guessed right), but acks "
          "are requests and the KV write and the stream publish cannot be one atomic operation on NATS 2.9 (no outbox: "
          "the engine publishes after each transition); atomic batch publish (nats-server 2.12+) could make the store an outbox.")
    over = [f"{b} {fmt(v, 1)}" for b, v in (("redis", r_wire), ("postgres", p_wire), ("nats", n_wire)) if v and v > 12]
    if over:
        w(f"- **≤ 12 round trips** (over: {', '.join(over)}): per task the claim/ack, per workflow the queue-registry read "
          "where the store cannot fold them: the ack, the follow-up publish and the announcement (NATS).")
    if sq_pts:
        w(f"- **SQLite from several processes** ({sq_txt}): processes are woken across the file by UNIX datagram "
          "sockets, but every write serialises on one file lock and SQLite's default busy handler sleeps 1, 2, 5, 10… ms "
          "between attempts, on 2 cores; a short-sleep retry around BEGIN IMMEDIATE, one connection per file per process, "
          "and `synchronous=NORMAL` (an option: no fsync per commit, at the cost of power-loss durability) would lift it.")
    w("")

    # ---- MeshCall
    w("## MeshCall.exec vs the original and a Celery task round trip")
    w("")
    w("One call at a time (p50 / p95 or p99 ms) and calls/s with 50 in flight; worker in another process.")
    w("")
    w("| system | backend | p50 ms | p99 ms | p50 × floor | calls/s @50 | backend ops per call |")
    w("|---|---|---:|---:|---:|---:|---|")
    mc_series: list[tuple[str, dict[str, list[Any]]]] = []
    for b in ("redis", "postgres", "nats"):
        e = omc.get(b)
        if e:
            mult = (med(e["p50"]) or 0) / rtt(b) if rtt(b) and med(e["p50"]) else None
            w(f"| ours | {b} | {cell(e['p50'])} | {cell(e['p99'])} | {fmt(mult, 0)}× | {cell(e['cps'])} | "
              f"{fmt(med(e['wire']), 1)} wire round trips (caller + worker, exact) |")
            mc_series.append((f"ours {b}", e))
        if b in tsmc and tsmc[b]["p50"]:
            t = tsmc[b]
            mult = (med(t["p50"]) or 0) / rtt(b) if rtt(b) else None
            unit = "Redis commands" if b == "redis" else "SQL statements"
            w(f"| TS original | {b} | {cell(t['p50'])} | {cell(t['p99'])} | {fmt(mult, 0)}× | {cell(t['cps'])} | "
              f"{fmt(med(t['ops']), 1)} {unit} (client + worker, exact); idle {fmt(med(t['idle']), 1)}/s |")
            mc_series.append((f"TS {b}", t))
        if b == "redis" and cel["p50"]:
            mult = (med(cel["p50"]) or 0) / rtt(b) if rtt(b) else None
            w(f"| Celery | redis | {cell(cel['p50'])} | {cell(cel['p99'])} | {fmt(mult, 0)}× | {cell(cel['cps'])} | "
              f"{fmt(med(cel['ops']), 1)} Redis commands (server-side delta, idle subtracted); "
              f"CPU {fmt(med(cel['cpu']), 2)} ms per call (client + worker) |")
            mc_series.append(("Celery redis", cel))
    for b in sorted(k for k in omc if "+" in k):  # mixed configurations (issue 8)
        e = omc[b]
        w(f"| ours (mixed) | {b} | {cell(e['p50'])} | {cell(e['p99'])} | – | {cell(e['cps'])} | "
          f"{fmt(med(e['wire']), 1)} wire round trips (caller + worker, exact) |")
    w("")
    if any(omc.get(b, {}).get("local_p50") for b in omc):
        w("Ours with the worker in the caller's process: " + "; ".join(
            f"{b} p50 {cell(e['local_p50'])} ms, {cell(e['local_cps'])} calls/s" for b, e in omc.items() if e.get("local_p50")) + ".")
        w("")

    # ---- MeshFlow
    w("## MeshFlow workflows vs the original and DBOS")
    w("")
    w("start→result p50 / p95 ms, one workflow at a time (p50 × the backend's round-trip floor in brackets); "
      "workflows/s with *in flight* started at once; signal → result for a workflow already waiting.")
    w("")
    w("| system | backend | 1 activity | 5 sequential | gather of 5 | 1-act wf/s | 5-seq wf/s | gather-5 wf/s | in flight | signal → result |")
    w("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    mf_series: list[tuple[str, dict[str, list[Any]]]] = []

    def flow_row(system: str, b: str, e: dict[str, list[Any]], floor_b: str | None) -> None:
        f = rtt(floor_b) if floor_b else None
        lat = []
        for s in SHAPES:
            p50, p95 = med(e[f"p50_{s}"]), med(e[f"p95_{s}"])
            mult = f" ({fmt(p50 / f, 0)}×)" if p50 and f else ""
            lat.append("–" if p50 is None else f"{fmt(p50)} / {fmt(p95)}{mult}")
        sig = "–" if med(e["sig_p50"]) is None else f"{fmt(med(e['sig_p50']))} / {fmt(med(e['sig_p95']))}"
        w(f"| {system} | {b} | {' | '.join(lat)} | {cell(e['wfs_wf_one'])} | {cell(e['wfs_wf_seq5'])} | {cell(e['wfs_wf_par5'])} | "
          f"{fmt(med(e['inflight']), 0)} | {sig} |")

    for b in BACKENDS:
        if b in omf:
            flow_row("ours", b, omf[b], b)
            mf_series.append((f"ours {b}", omf[b]))
        if b in tsmf and any(tsmf[b][k] for k in ("p50_wf_one", "wfs_wf_one")):
            flow_row("TS original", b, tsmf[b], b)
            mf_series.append((f"TS {b}", tsmf[b]))
        for mode in ("direct", "queue"):
            e = dbo.get((b, mode))
            if e and any(e["p50_wf_one"]):
                flow_row(f"DBOS ({mode})", b, e, b)
                mf_series.append((f"DBOS {b} {mode}", e))
    for b in BACKENDS:
        if b in omf_local and any(omf_local[b]["p50_wf_one"]):
            flow_row("ours, same process", b, omf_local[b], b)
    for b in sorted(k for k in omf if "+" in k):  # mixed configurations (issue 8)
        flow_row("ours (mixed)", b, omf[b], None)
    w("")
    w("TS rows: the anchor times only `wfOne` one at a time; the 5-step latencies come from our `bench-latency.js` "
      "extension (same worker, same workflows). Its seq5/gather throughput uses N_MULTI workflows with START_CONC in flight.")
    w("")

    # ---- operations
    w("## Backend operations per 1-activity workflow")
    w("")
    w("| system | backend | per workflow | how counted | idle (nothing to do) |")
    w("|---|---|---:|---|---|")
    ops_series: list[tuple[str, float | None]] = []
    for b in ("redis", "postgres", "nats", "sqlite"):
        e = omf.get(b)
        if e and med(e["wire"]) is not None:
            w(f"| ours | {b} | {fmt(med(e['wire']), 1)} | wire round trips, client + worker (driver counters, exact); "
              f"+{fmt(med(e['waits']), 1)} blocked reads; {fmt(med(e['wire_extra']), 1)} per extra activity | "
              f"{_idle_text(ops_x.get(b))} |")
            ops_series.append((f"ours {b} wire", med(e["wire"])))
        elif e and med(e["prov"]) is not None:
            w(f"| ours | {b} | {fmt(med(e['prov']), 1)} | provider calls (embedded: no wire) | – |")
        x = ops_x.get(b)
        if x and x.get("per_wf_net") is not None:
            exact = med(e["wire"]) if e else None
            flag = (" — **unreliable in this run**: far above the exact count, i.e. other clients' commands landed in the "
                    "window" if b == "redis" and exact and x["per_wf_net"] > 2 * exact else "")
            w(f"| ours | {b} | {fmt(x['per_wf_net'], 1)} | {x.get('what')}, server-side delta over {x.get('workflows')} "
              f"sequential workflows minus an idle window (raw {fmt(x.get('per_wf_raw'), 1)}){flag} | |")
            if b == "postgres":  # private database: exact; the shared Redis's and NATS's server counts are not
                ops_series.append((f"ours {b} server commits", x["per_wf_net"]))
        if b in tsmf and tsmf[b]["ops"]:
            t = tsmf[b]
            what = ("Redis commands (client + worker, exact)" if b == "redis" else "SQL statements (client + worker, exact)")
            rt = f"; {fmt(med(t['ops_rt']), 1)} round trips (pipelines count once)" if b == "redis" else ""
            srv_ops = f"; server-side {fmt(med(t['server_ops']), 1)} {'commands' if b == 'redis' else 'commits'} per wf in the throughput phase" if med(t["server_ops"]) else ""
            w(f"| TS original | {b} | {fmt(med(t['ops']), 1)} | {what}{rt}{srv_ops} | {fmt(med(t['idle']), 1)}/s |")
            ops_series.append((f"TS {b}", med(t["ops"])))
        for mode in ("direct", "queue"):
            e2 = dbo.get((b, mode))
            if e2 and med(e2["commits"]) is not None:
                rows = f"; {fmt(med(e2['rows']), 1)} rows written (inserted + updated + deleted)" if med(e2["rows"]) is not None else ""
                w(f"| DBOS ({mode}) | {b} | {fmt(med(e2['commits']), 1)} | commits (pg_stat_database.xact_commit of its private "
                  f"database, idle window subtracted: noisy when its polling commits dominate){rows} | "
                  f"{fmt(med(e2['idle_commits']), 0)} commits/s (queue + notification polling) |")
                ops_series.append((f"DBOS {b} {mode} commits", med(e2["commits"])))
    if cel["ops"]:
        w(f"| Celery (task round trip) | redis | {fmt(med(cel['ops']), 1)} | Redis commands, server-side delta minus idle | |")
    w("")
    w("Server-side Redis counts are server-wide (`INFO commandstats`): other clients of the shared server land in them, so "
      "the exact driver-level counts are the reference; the PostgreSQL deltas come from private databases and count only us.")
    w("")

    # ---- scale
    series_scale: dict[str, list[dict[str, Any]]] = {}
    if scale_x:
        w("## Throughput with 1, 2 and 4 worker processes (ours, 1-activity workflows)")
        w("")
        w("| backend | in flight | " + " | ".join(f"{k} proc" for k in (1, 2, 4)) + " |")
        w("|---|---:|---:|---:|---:|")
        for b, x in scale_x.items():
            pts = {p["procs"]: p for p in x.get("points", [])}
            series_scale[b] = x.get("points", [])
            w(f"| {b} | {x.get('inflight')} | " + " | ".join(
                (f"{fmt(pts[k]['wf_per_s'])} ({', '.join(fmt(r) for r in pts[k]['runs'])})" if k in pts else "–")
                for k in (1, 2, 4)) + " |")
        w("")
        w("The client (starting and awaiting the workflows) runs in one more process; with 2 cores, more worker processes "
          "mostly compete for the same CPU, so flat or falling figures past 2 processes are the machine, not a lock.")
        w("")

    # ---- history
    series_hist: dict[str, list[dict[str, Any]]] = {}
    if hist_x:
        w("## Latency of one workflow with many finished workflows already stored (must stay flat)")
        w("")
        sizes = sorted({p["finished"] for x in hist_x.values() for p in x.get("points", [])})
        w("| backend | " + " | ".join(f"{s:,} finished: p50 / p95 ms" for s in sizes) + " |")
        w("|---|" + "---:|" * len(sizes))
        for b, x in hist_x.items():
            pts = {p["finished"]: p for p in x.get("points", [])}
            series_hist[b] = x.get("points", [])
            w(f"| {b} | " + " | ".join((f"{fmt(pts[s]['p50_ms'])} / {fmt(pts[s]['p95_ms'])}" if s in pts else "–") for s in sizes) + " |")
        w("")
        seeded = ", ".join(f"{b}: " + ", ".join(f"{p['finished']:,} in {fmt(p.get('seed_seconds'), 0)} s"
                                                 for p in x.get("points", []) if p.get("seed_seconds"))
                           for b, x in hist_x.items())
        w(f"Seeding: {next(iter(hist_x.values())).get('seeding')} ({seeded}). **Sizes run: {', '.join(f'{s:,}' for s in sizes)}**"
          + ("; 1M was not run: the full variant stops at 100k (the quick one at 10k); 1M takes ~1.3 GB of Redis memory "
             "and ~2.5 minutes of seeding here (`extra_bench.py --case history --sizes 10000,100000,1000000`)."
             if max(sizes, default=0) < 1_000_000 else
             ". The 1M point was run by hand after the quick run, on the same code: `extra_bench.py --case history "
             "--sizes 10000,100000,1000000 -n 30` (Redis held ~1.3 GB at 1M)."))
        w("")

    # ---- memory
    if mem_x or ts_susp:
        w("## Memory per 10,000 suspended workflows")
        w("")
        w("| system | backend | worker RSS MB per 10k | backend memory per 10k | how many | settle s |")
        w("|---|---|---:|---|---:|---:|")
        for b, x in mem_x.items():
            backend_mem = (f"redis used_memory +{fmt(x.get('redis_used_memory_mb_delta_per_10k'), 1)} MB"
                           if x.get("redis_used_memory_mb_delta_per_10k") is not None else
                           f"SQLite file +{fmt(x.get('sqlite_file_mb_delta_per_10k'), 1)} MB"
                           if x.get("sqlite_file_mb_delta_per_10k") is not None else "–")
            w(f"| ours | {b} | {fmt(x.get('worker_rss_mb_per_10k'), 1)} | {backend_mem} | {x.get('workflows')} | "
              f"{fmt(x.get('settle_seconds'), 0)} |")
        s = (ts_susp or {}).get("suspended")
        if s:
            w(f"| TS original | redis | {fmt(s.get('worker_rss_mb_per_10k'), 1)} | redis used_memory "
              f"+{fmt(s.get('redis_used_memory_mb_per_10k'), 1)} MB | {s.get('n')} (scaled to 10k) | {fmt(s.get('settle_s'), 0)} |")
        w("")

    # ---- profile
    if prof:
        w("## Profile of the hottest path: the worker during 1-activity throughput on Redis")
        w("")
        w(_profile_text(prof))
        w("")

    # ---- plots
    made = plots({"meshcall": mc_series, "meshflow": mf_series, "scale": series_scale, "history": series_hist,
                  "ops": ops_series}, plot_dir)
    if made:
        w("## Plots")
        w("")
        for name in made:
            w(f"![{name}]({plot_rel}/{name})")
            w("")

    # ---- steps and details
    w("## Steps of this run")
    w("")
    w("| step | side | seconds | exit | JSON |")
    w("|---|---|---:|---:|---|")
    for s in meta.get("steps", []):
        w(f"| {s['name']} | {s['side']} | {fmt(s['seconds'], 0)} | {s['exit']} | {'yes' if s['json'] else 'no'} |")
    w("")
    w("## Details: our scripts' own tables (all rounds merged)")
    w("")
    mc_reports = rounds_of(data, "ours-meshcall")
    if mc_reports:
        w(tables.markdown(tables.merge(mc_reports)))
        w("")
    mf_reports = rounds_of(data, "ours-meshflow")
    if mf_reports:
        w(tables.meshflow_markdown(mf_reports))
        w("")
    return "\n".join(L)


def _rel(path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(HERE.parent))
    except ValueError:
        return str(path)


def _pg_settings(srv: dict[str, Any]) -> str:
    s = srv.get("postgres_settings") or {}
    return ", ".join(f"{k}={v}" for k, v in s.items() if v not in (None, ""))


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.1f}×" if a and b else "–"


def _ten_x(ts_p50: float | None, p50: float | None, cps: float | None, ts_cps: float | None) -> str:
    if not (ts_p50 and p50 and cps and ts_cps):
        return "not measured"
    low = min(ts_p50 / p50, cps / ts_cps)
    return "**met** (≥ 10× on both)" if low >= 10 else f"**missed**: the weaker of the two ratios is {low:.1f}× (target 10×)"


def _idle_text(x: dict[str, Any] | None) -> str:
    got = dig(x, "idle_polling")
    if not got or got.get("per_s_total") is None:
        return "–"
    kinds = ", ".join(f"{k} {v}" for k, v in (got.get("by_kind_per_s") or {}).items())
    return f"{fmt(got['per_s_total'], 1)} requests/s ({kinds})"


def _share(prof: dict[str, Any], *needles: str) -> float:
    total = 0.0
    for frame, _count, pct in [*prof.get("top_total", []), *prof.get("top_own", [])]:
        if any(n in frame for n in needles):
            total = max(total, pct)
    return total


def _profile_text(prof: dict[str, Any]) -> str:
    if prof.get("error"):
        return f"Not available: {prof['error']}"
    lines = [f"`py-spy record --rate 200 --nonblocking` of the worker process for {fmt(prof.get('seconds'), 0)} s while batches of "
             f"{prof.get('inflight')} `wf_one` workflows ran ({fmt(prof.get('wf_per_s_during'))} wf/s meanwhile); "
             f"{prof.get('samples')} samples, {fmt(100 * prof.get('idle_in_epoll_samples', 0) / max(1, prof.get('samples', 1)), 0)}% "
             f"of them idle in `epoll`. Raw collapsed stacks: `{prof.get('raw_file')}` (flamegraph-ready).", "",
             "Top frames by own time:", "", "| frame | samples | % |", "|---|---:|---:|"]
    for frame, count, pct in prof.get("top_own", [])[:12]:
        lines.append(f"| `{frame}` | {count} | {pct} |")
    lines += ["", "Top hotmesh frames by total (inclusive) time:", "", "| frame | samples | % |", "|---|---:|---:|"]
    shown = 0
    for frame, count, pct in prof.get("top_total", []):
        if "hotmesh" in frame and shown < 14:
            lines.append(f"| `{frame}` | {count} | {pct} |")
            shown += 1
    def pc(value: float) -> str:
        return f"{value:.1f}%" if value else "below the top frames"

    write = _share(prof, "_SelectorSocketTransport.write")
    transition = _share(prof, "Engine.transition")
    ack = _share(prof, "RedisStream.ack", "Stream.ack")
    get_job = _share(prof, "get_job")
    connect = _share(prof, "_sock_connect", "Connection.connect", "_connect (redis")
    json_share = sum(p for f, _c, p in prof.get("top_own", []) if "json" in f.lower())
    lines += ["", "What it says to fix next (shares are of all worker samples):", "",
              f"1. **Socket writes, {pc(write)}**: one `send` syscall per command. Fewer commands per workflow "
              "(below) is the main lever; where several commands leave together, pipeline them (one write).",
              f"2. **`Engine.transition` {pc(transition)}** (the Lua transition and its JSON encoding; JSON own time "
              f"{pc(json_share)} over the top frames): encode each payload once and pass the same bytes to the script and "
              "the message.",
              (f"3. **Stream ack {pc(ack)}**: the ack after every task is a separate command; folding it into the task's "
               "last transition removes one round trip per task." if ack else
               "3. **Stream ack**: no longer among the top frames (the ack rides on the task's transition in this build)."),
              f"4. **`get_job` {pc(get_job)}**: the job read at the top of every later workflow task could come from the "
              "previous transition's result.",
              f"5. **New connections {pc(connect)}**: `_sock_connect` / `connect` frames during steady throughput mean the "
              "pools open connections under load (pool smaller than the concurrency, or connections dropped after use); "
              "a pool sized to the worker's concurrency keeps this at 0."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("directory", help="a bench_all.py results directory")
    parser.add_argument("--out", default=str(HERE / "REPORT.md"))
    parser.add_argument("--plots", default=str(HERE / "report"))
    args = parser.parse_args(argv)
    data = load(Path(args.directory))
    out = Path(args.out)
    plot_dir = Path(args.plots)
    try:
        plot_rel = str(plot_dir.resolve().relative_to(out.resolve().parent))
    except ValueError:
        plot_rel = str(plot_dir.resolve())
    text = build(data, plot_dir, plot_rel)
    out.write_text(text + "\n", encoding="utf-8")
    print(f"wrote {out} ({len(text.splitlines())} lines) and plots in {plot_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
