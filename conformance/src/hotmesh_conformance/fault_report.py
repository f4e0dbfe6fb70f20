"""Turn fault-run figures (JSON lines written under ``HOTMESH_FAULT_REPORT``) into a Markdown table.

Usage::

    HOTMESH_FAULT_REPORT=faults.jsonl pytest --pyargs hotmesh_conformance.suite.test_faults --hotmesh-url ...
    HOTMESH_FAULT_REPORT=faults.jsonl pytest hotmesh-redis/tests/test_partition.py
    python -m hotmesh_conformance.fault_report faults.jsonl

One row per backend: workflows run, faults injected, workflows lost and duplicate outcomes
(both must be 0), activity runs beyond one per call (reruns, allowed by promise C3), and the
median time from a fault to the first transition a worker committed after it (recovery) after a
worker was killed, after a server restart and after a server pause (partition).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = ["main", "table"]

_COLUMNS = [
    "backend", "fault runs", "workflows run", "faults injected", "workflows lost", "duplicate outcomes",
    "activity reruns", "median recovery after a worker kill", "after a server restart", "after a server pause",
]  # fmt: skip


def _median(values: list[float]) -> str:
    if not values:
        return "–"
    return f"{statistics.median(values):.2f} s (n={len(values)})"


def table(rows: Iterable[dict[str, Any]]) -> str:
    """The Markdown table of the given figure rows, one line per backend (in first-seen order)."""
    by_backend: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_backend.setdefault(str(row["backend"]), []).append(row)
    lines = ["| " + " | ".join(_COLUMNS) + " |", "|" + "---|" * len(_COLUMNS)]
    for backend, runs in by_backend.items():

        def total(name: str, runs: list[dict[str, Any]] = runs) -> int:
            return sum(int(r.get(name, 0)) for r in runs)

        def pooled(name: str, runs: list[dict[str, Any]] = runs) -> list[float]:
            return [float(x) for r in runs for x in r.get(name, [])]

        cells = [
            backend, str(len(runs)), f"{total('workflows'):,}", f"{total('faults'):,}", str(total("lost")),
            str(total("duplicates")), f"{total('reruns'):,}", _median(pooled("recovery_worker_kill")),
            _median(pooled("recovery_server_restart")), _median(pooled("recovery_partition")),
        ]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Print the table of the JSON-lines files given (``-`` reads stdin)."""
    parser = argparse.ArgumentParser(prog="python -m hotmesh_conformance.fault_report", description=__doc__.split("\n")[0])
    parser.add_argument("files", nargs="+", help="JSON-lines files written under HOTMESH_FAULT_REPORT")
    args = parser.parse_args(argv)
    rows: list[dict[str, Any]] = []
    for name in args.files:
        text = sys.stdin.read() if name == "-" else Path(name).read_text(encoding="utf-8")
        rows += [json.loads(line) for line in text.splitlines() if line.strip()]
    print(table(rows))
    failed = [r for r in rows if r.get("problems")]
    if failed:
        print(f"\n{len(failed)} run(s) reported problems: " + "; ".join(f"{r['backend']} {r['test']}" for r in failed))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
