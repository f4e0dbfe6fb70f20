#!/usr/bin/env python
"""Turn one or more ``meshcall_bench.py --json`` files into the Markdown tables of README.md.

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

__all__ = ["merge", "markdown"]

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


def main(argv: Sequence[str] | None = None) -> int:
    """Print the tables for the JSON files named on the command line."""
    paths = list(sys.argv[1:] if argv is None else argv)
    if not paths:
        print(__doc__)
        return 2
    reports = []
    for path in paths:
        with open(path, encoding="utf-8") as handle:
            reports.append(json.load(handle))
    runs = "; ".join(
        f"{re.sub(r'[+]00:00$', ' UTC', r['date'])} ({r['machine']}{', ' + r['note'] if r.get('note') else ''})"
        for r in reports
    )
    print(f"Python {reports[0]['python']}. Runs ended: {runs}\n")
    print(markdown(merge(reports)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
