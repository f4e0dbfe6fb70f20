#!/usr/bin/env python
"""Turn ``meshcall_bench.py`` / ``meshflow_bench.py`` / ``meshdata_bench.py`` ``--json`` files into README tables.

Why: the README's numbers must be the measured ones, not retyped. Several files (several full
runs) are merged: every latency and throughput figure is the median over all runs of all files,
each floor the median over the files. Run::

    python benchmarks/report.py /tmp/run1.json /tmp/run2.json > /tmp/tables.md
"""

from __future__ import annotations

import json
import re
import statistics
import sys
from collections.abc import Sequence
from typing import Any

__all__ = ["markdown", "merge", "meshdata_markdown", "meshflow_markdown"]

ORIGINAL = {
    "redis": "p50 6.1 ms / p99 18.0 ms, 206 calls/s @50",
    "postgresql": "p50 1,029 ms, 16 calls/s @50",
}
"""The TypeScript original on this kind of machine (measured earlier, not in this run)."""
TARGETS = {"redis": "p50 <= 1.5 ms, >= 2,000 calls/s", "postgresql": "p50 <= 3 ms"}


def label(url: str) -> str:
    """A stable name for a backend URL (SQLite files live in a fresh temporary directory)."""
    if url.startswith("sqlite:"):
        return "sqlite:///<tmp>/bench.db"
    return url


def _median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def _throughput(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Median calls/s over the runs without errors (a run that failed fast is no throughput)."""
    clean = [t for t in runs if not t["errors"]] or list(runs)
    failed = [t for t in runs if t["errors"]]
    return {
        "calls_per_s": _median([t["calls_per_s"] for t in clean]),
        "p50_ms": _median([t["p50_ms"] for t in clean]),
        "errors": (
            f"{len(failed)}/{len(runs)} runs: {sum(sum(t['errors'].values()) for t in failed)} errors"
            if failed
            else "0"
        ),
    }


def merge(reports: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Median over every run of every report, per backend label; floors median per report."""
    backends: dict[str, dict[str, Any]] = {}
    for report in reports:
        for result in report["results"]:
            entry = backends.setdefault(
                label(result["url"]),
                {"remote": [], "local": [], "remote_tp": [], "local_tp": [], "round_trips": None, "floors": []},
            )
            for run in result["runs"]:
                if run["remote"]:
                    entry["remote"].append(run["remote"])
                    entry["remote_tp"].append(run["remote_throughput"])
                entry["local"].append(run["local"])
                entry["local_tp"].append(run["local_throughput"])
            if result.get("round_trips"):
                entry["round_trips"] = result["round_trips"]
            floors = report["floors"].get(result["url"], {})
            if "error" not in floors:
                entry["floors"].append(floors)
    merged: dict[str, Any] = {}
    for name, entry in backends.items():
        floors: dict[str, dict[str, Any]] = {}
        for found in entry["floors"]:
            for key, floor in found.items():
                floors.setdefault(key, {"what": floor["what"], "p50": []})["p50"].append(floor["p50_ms"])
        merged[name] = {
            "runs": len(entry["local"]),
            "remote": {k: _median([r[k] for r in entry["remote"]]) for k in ("p50_ms", "p99_ms")},
            "local": {k: _median([r[k] for r in entry["local"]]) for k in ("p50_ms", "p99_ms")},
            "remote_tp": _throughput(entry["remote_tp"]),
            "local_tp": _throughput(entry["local_tp"]),
            "floors": {k: {"what": v["what"], "p50_ms": _median(v["p50"])} for k, v in floors.items()},
            "round_trips": entry["round_trips"],
        }
    return merged


def _f(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def markdown(merged: dict[str, Any]) -> str:
    """The floors, latency/throughput and round-trip tables."""
    out = ["### Floors (bare driver, same run; p50)", "", "| backend | floor | p50 ms |", "|---|---|---:|"]
    for name, m in merged.items():
        for floor in m["floors"].values():
            out.append(f"| {name} | {floor['what']} | {_f(floor['p50_ms'], 3)} |")
    out += [
        "",
        "### exec latency and throughput",
        "",
        "| backend | worker | exec p50 ms | exec p99 ms | p50 × floor | calls/s @50 | p50 @50 ms | errors @50 |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, m in merged.items():
        rtt = m["floors"].get("rtt", {}).get("p50_ms")
        for worker, lat, tp in (
            ("other process", m["remote"], m["remote_tp"]),
            ("same process", m["local"], m["local_tp"]),
        ):
            if lat["p50_ms"] is None:
                out.append(f"| {name} | {worker} | n/a (memory:// is per process) | | | | | |")
                continue
            multiple = f"{lat['p50_ms'] / rtt:.0f}×" if rtt else "–"
            out.append(
                f"| {name} | {worker} | {_f(lat['p50_ms'])} | {_f(lat['p99_ms'])} | {multiple} | "
                f"{_f(tp['calls_per_s'], 0)} | {_f(tp['p50_ms'], 1)} | {tp['errors']} |"
            )
    out += [
        "",
        "### Against the targets (issue 9) and the TypeScript original",
        "",
        "| backend | target | original, measured earlier, not this run | this run (worker in another process) |",
        "|---|---|---|---|",
    ]
    for name, m in merged.items():
        scheme = name.split(":", 1)[0]
        if scheme in ORIGINAL:
            lat, tp = m["remote"], m["remote_tp"]
            out.append(
                f"| {name} | {TARGETS[scheme]} | {ORIGINAL[scheme]} | p50 {_f(lat['p50_ms'])} ms / "
                f"p99 {_f(lat['p99_ms'])} ms, {_f(tp['calls_per_s'], 0)} calls/s @50 |"
            )
    out += ["", "### Round trips per call", ""]
    for name, m in merged.items():
        trips = m["round_trips"]
        if not trips:
            continue
        out += [
            f"**{name}** ({trips['calls']} sequential calls, caller and worker in one process on two connections)",
            "",
            "| level | kind | call | caller | worker | caller ms | worker ms |",
            "|---|---|---|---:|---:|---:|---:|",
        ]
        for level, sides in (("provider", trips), ("wire", trips.get("wire"))):
            if not sides:
                continue
            for kind in ("op", "wait", "background"):
                names = sorted(set(sides["caller"][kind]) | set(sides["worker"][kind]))
                for call in names:
                    cells = []
                    for side in ("caller", "worker"):
                        cells.append(_f(sides[side][kind].get(call)))
                    for side in ("caller", "worker"):
                        cells.append(_f(sides[side].get("ms", {}).get(f"{kind}:{call}"), 3))
                    out.append(f"| {level} | {kind} | `{call}` | " + " | ".join(cells) + " |")
            totals = [_f(sides[s]["total_ops"]["round trips"]) for s in ("caller", "worker")]
            out.append(f"| {level} | **total op** | | **{totals[0]}** | **{totals[1]}** | | |")
        out.append("")
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------
# MeshFlow (meshflow_bench.py --json) and MeshData (meshdata_bench.py --json)
# ---------------------------------------------------------------------------------------------

MESHFLOW_TARGETS = {
    "redis": {"p50_ms": 5.0, "wf_per_s": 500.0},
    "postgresql": {"p50_ms": 10.0, "wf_per_s": 200.0},
}
"""Issue 9: 1-activity workflow start->result p50 and workflows/s; NATS within 1.5x of Redis; <= 12 round trips."""
ROUND_TRIP_TARGET = 12


def _rtt(floors: dict[str, Any], url: str) -> float | None:
    found = floors.get(url, {}).get("rtt")
    return found.get("p50_ms") if isinstance(found, dict) else None


def _mfmedian(runs: Sequence[dict[str, Any] | None], key: str, metric: str) -> float | None:
    return _median([r[key].get(metric) for r in runs if r and r.get(key)])


def meshflow_merge(reports: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per backend label: every run of every report (remote, local), floors, last round trips/memory."""
    merged: dict[str, Any] = {}
    for report in reports:
        for result in report["results"]:
            entry = merged.setdefault(
                label(result["url"]),
                {"remote": [], "local": [], "floors": [], "round_trips": None, "summary": None, "memory": [], "errors": []},
            )
            for run in result.get("runs", []):
                entry["remote"].append(run.get("remote"))
                entry["local"].append(run.get("local"))
            if result.get("round_trip_summary"):
                entry["summary"] = result["round_trip_summary"]
                entry["round_trips"] = result["round_trips"]
            if result.get("memory"):
                entry["memory"].append(result["memory"])
            if result.get("error"):
                entry["errors"].append(result["error"])
            rtt = _rtt(report["floors"], result["url"])
            if rtt is not None:
                entry["floors"].append(rtt)
    return merged


def meshflow_markdown(results_or_reports: Sequence[dict[str, Any]], floors: dict[str, Any] | None = None) -> str:
    """Tables: latency (x floor), workflows/s, signal, round trips, memory, targets.

    Pass either full reports (``floors`` None) or one run's results plus its floors.
    """
    reports = list(results_or_reports) if floors is None else [{"results": list(results_or_reports), "floors": floors}]
    merged = meshflow_merge(reports)
    out = [
        "#### start -> result latency (one workflow at a time) and workflows/s (many started at once)",
        "",
        "Latencies: p50 / p95 ms (p50 as a multiple of the backend's bare round trip, the median floor of the runs)",
        "",
        "| backend | worker | 1 activity | 5 sequential | gather of 5 "
        "| 1 act wf/s | 5 seq wf/s | gather 5 wf/s | in flight | signal → result |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, m in merged.items():
        rtt = _median(m["floors"])
        for worker, runs in (("other process", m["remote"]), ("same process", m["local"])):
            runs = [r for r in runs if r]
            if not runs:
                if worker == "other process" and name.startswith("memory"):
                    out.append(f"| {name} | {worker} | n/a (memory:// is per process) | | | | | | | |")
                continue
            def lat(shape: str, runs: list[dict[str, Any]] = runs, rtt: float | None = rtt) -> str:
                key = shape if shape == "signal" else "lat_" + shape
                p50, p95 = _mfmedian(runs, key, "p50_ms"), _mfmedian(runs, key, "p95_ms")
                times = f" ({p50 / rtt:.0f}×)" if p50 and rtt else ""
                return f"{_f(p50, 1)} / {_f(p95, 1)}{times}"
            tputs = [_f(_mfmedian(runs, "tput_" + s, "wf_per_s"), 0) for s in ("wf_one", "wf_seq5", "wf_par5")]
            errors = sum(sum(r["tput_" + s]["errors"].values()) for r in runs for s in ("wf_one", "wf_seq5", "wf_par5"))
            inflight = runs[-1]["tput_wf_one"]["inflight"]
            out.append(
                f"| {name} | {worker} | {lat('wf_one')} | {lat('wf_seq5')} | {lat('wf_par5')} | "
                + " | ".join(tputs)
                + f" | {inflight}{f' ({errors} errors)' if errors else ''} | {lat('signal')} |"
            )
    out += [
        "",
        "#### Round trips (client + worker, sequential workflows; op = issued per workflow, wait = blocked reads woken by the backend)",
        "",
        "| backend | provider ops / 1-act wf | wire round trips / 1-act wf | waits / 1-act wf (provider; wire) "
        "| provider ops / extra activity | wire round trips / extra activity | target ≤ 12 |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for name, m in merged.items():
        s = m["summary"]
        if not s:
            continue
        one, act = s["per_workflow_1act"], s["per_extra_activity"]
        count = one["wire_ops"] if one["wire_ops"] is not None else one["provider_ops"]
        verdict = "met" if count <= ROUND_TRIP_TARGET else f"missed by {count - ROUND_TRIP_TARGET:.1f}"
        out.append(
            f"| {name} | {_f(one['provider_ops'], 1)} | {_f(one['wire_ops'], 1)} | "
            f"{_f(one['provider_waits'], 1)}; {_f(one['wire_waits'], 1)} | {_f(act['provider_ops'], 1)} | "
            f"{_f(act['wire_ops'], 1)} | {verdict} |"
        )
    out += ["", "#### Round trips per 1-activity workflow, by call", ""]
    for name, m in merged.items():
        trips = m["round_trips"]
        if not trips:
            continue
        entry = trips["wf_one"]
        out += [f"**{name}**", "", "| level | kind | call | client | worker |", "|---|---|---|---:|---:|"]
        for level, sides in (("provider", entry), ("wire", entry.get("wire"))):
            if not sides:
                continue
            for kind in ("op", "wait", "background"):
                for call in sorted(set(sides["caller"][kind]) | set(sides["worker"][kind])):
                    out.append(
                        f"| {level} | {kind} | `{call}` | {_f(sides['caller'][kind].get(call), 2)} | "
                        f"{_f(sides['worker'][kind].get(call), 2)} |"
                    )
            out.append(
                f"| {level} | **total op** | | **{_f(sides['caller']['total_ops']['round trips'], 2)}** | "
                f"**{_f(sides['worker']['total_ops']['round trips'], 2)}** |"
            )
        out.append("")
    mem_rows = [(n, mm) for n, m in merged.items() for mm in m["memory"]]
    if mem_rows:
        out += [
            "#### Memory per 10,000 suspended workflows (each waiting on a signal; worker in another process)",
            "",
            "| backend | workflows | worker RSS before → after MB | worker RSS per 10k MB | redis used_memory per 10k MB "
            "| SQLite file per 10k MB | start s | settled s |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for name, mm in mem_rows:
            out.append(
                f"| {name} | {mm['workflows']:,} | {_f(mm['worker_rss_mb_before'])} → {_f(mm['worker_rss_mb_after'])} | "
                f"{_f(mm['worker_rss_mb_per_10k'])} | {_f(mm['redis_used_memory_mb_delta_per_10k'])} | "
                f"{_f(mm['sqlite_file_mb_delta_per_10k'])} | {_f(mm['start_seconds'])} | {_f(mm['settle_seconds'])} |"
            )
        out.append("")
    out += [
        "#### Against the targets (issue 9; worker in another process)",
        "",
        "| backend | target | measured | verdict |",
        "|---|---|---|---|",
    ]
    redis_p50 = None
    for name, m in merged.items():
        runs = [r for r in m["remote"] if r]
        if not runs:
            continue
        p50 = _mfmedian(runs, "lat_wf_one", "p50_ms")
        tput = _mfmedian(runs, "tput_wf_one", "wf_per_s")
        scheme = name.split(":", 1)[0]
        if scheme == "redis" and redis_p50 is None:
            redis_p50 = p50
        target = MESHFLOW_TARGETS.get(scheme)
        if target and p50 is not None and tput is not None:
            misses = []
            if p50 > target["p50_ms"]:
                misses.append(f"p50 {p50 / target['p50_ms']:.1f}× the target")
            if tput < target["wf_per_s"]:
                misses.append(f"wf/s {tput / target['wf_per_s']:.2f}× the target")
            out.append(
                f"| {name} | p50 ≤ {target['p50_ms']:g} ms, ≥ {target['wf_per_s']:g} wf/s | p50 {p50:.1f} ms, {tput:.0f} wf/s | "
                f"{'met' if not misses else 'missed: ' + ', '.join(misses)} |"
            )
        elif scheme == "nats" and p50 is not None and redis_p50:
            ratio = p50 / redis_p50
            out.append(
                f"| {name} | within 1.5× of redis | p50 {p50:.1f} ms = {ratio:.2f}× redis, {_f(tput, 0)} wf/s | "
                f"{'met' if ratio <= 1.5 else 'missed'} |"
            )
    return "\n".join(out)


def meshdata_markdown(reports: Sequence[dict[str, Any]]) -> str:
    """find_where latency per record count, and round trips per indexed set()."""
    out = [
        "| backend | records | query | p50 ms | p95 ms | × floor | hits (count) | load s |",
        "|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    sets: list[str] = []
    for report in reports:
        for result in report["results"]:
            rtt = _rtt(report["floors"], result["url"])
            for size in result.get("sizes", []):
                for q in size["queries"]:
                    multiple = f"{q['p50_ms'] / rtt:.0f}×" if rtt and q.get("p50_ms") else "–"
                    out.append(
                        f"| {label(result['url'])} | {size['records']:,} | {q['query']} | {_f(q['p50_ms'])} | "
                        f"{_f(q['p95_ms'])} | {multiple} | {q['count']:,} | {_f(size['load_seconds'], 1)} |"
                    )
            if result.get("error"):
                out.append(f"| {label(result['url'])} | ERROR {result['error']} | | | | | | |")
            cost = result.get("set_cost")
            if cost:
                sets.append(
                    f"| {label(result['url'])} | {_f(cost['provider_ops'])} | {_f(cost.get('search_ops'))} | "
                    f"{_f(cost.get('wire_ops'))} | {', '.join(f'`{k}` {v:g}' for k, v in sorted(cost['by_call'].items()))} | "
                    f"{_f(cost.get('p50_ms'))} |"
                )
    if sets:
        out += [
            "",
            "One `MeshData.set(entity, id, {field: value})` on an indexed record (sequential, after warm-up):",
            "",
            "| backend | store/stream/sub provider calls | search provider calls | wire round trips | calls | p50 ms |",
            "|---|---:|---:|---:|---|---:|",
            *sets,
        ]
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    """Print the tables for the JSON files named on the command line.

    MeshCall, MeshFlow (``"bench": "meshflow"``) and MeshData (``"bench": "meshdata"``) files may
    be mixed: each kind gets its own section.
    """
    paths = list(sys.argv[1:] if argv is None else argv)
    if not paths:
        print(__doc__)
        return 2
    kinds: dict[str, list[dict[str, Any]]] = {}
    for path in paths:
        with open(path, encoding="utf-8") as handle:
            report = json.load(handle)
        kinds.setdefault(report.get("bench", "meshcall"), []).append(report)
    for kind, reports in kinds.items():
        runs = "; ".join(
            f"{re.sub(r'[+]00:00$', ' UTC', r['date'])} ({r['machine']}{', ' + r['note'] if r.get('note') else ''})"
            for r in reports
        )
        print(f"## {kind}\n\nPython {reports[0]['python']}. Runs ended: {runs}\n")
        if kind == "meshflow":
            print(meshflow_markdown(reports))
        elif kind == "meshdata":
            print(meshdata_markdown(reports))
        else:
            print(markdown(merge(reports)))
        print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
