"""The fault suite's ledger, checker parts and report table (no backend needed)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from hotmesh.providers import Transition, TransitionResult, TransitionStatus
from hotmesh_conformance import fault_report
from hotmesh_conformance.ledger import (
    LEDGER_ENV,
    Figures,
    Ledger,
    RecordingStore,
    check_commits,
    record_activity,
)

pytestmark = pytest.mark.anyio


def test_ledger_reads_runs_and_ignores_a_line_torn_by_a_kill(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "ledger.txt"
    monkeypatch.setenv(LEDGER_ENV, str(path))
    record_activity("double", "wf:1:2", 1, "wf", 2)
    record_activity("double", "wf:1:2", 2, "wf", 2)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write("123 double wf:1:3 1 wf")  # the process died mid-append
    runs = Ledger(path).runs()
    assert [(r.name, r.key, r.attempt, r.workflow_id, r.seq) for r in runs] == [
        ("double", "wf:1:2", 1, "wf", 2), ("double", "wf:1:2", 2, "wf", 2),
    ]  # fmt: skip
    assert runs[0].mono <= runs[1].mono


class _Store:
    def __init__(self, status: TransitionStatus) -> None:
        self.status = status
        self.name = "fake"

    async def apply_transition(self, transition: Transition, /, *, stream: Any = None) -> TransitionResult:
        return TransitionResult(self.status)


async def test_recording_store_logs_applied_transitions_only_and_checker_finds_doubles(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.txt")
    applied = RecordingStore(_Store(TransitionStatus.APPLIED), ledger.commits_path)
    duplicate = RecordingStore(_Store(TransitionStatus.DUPLICATE), ledger.commits_path)
    assert applied.name == "fake"  # everything else is forwarded
    await applied.apply_transition(Transition("mf:a", "h:1:1"))
    await duplicate.apply_transition(Transition("mf:a", "h:1:1"))
    figures = Figures("t", "fake")
    check_commits(ledger, figures)
    assert figures.duplicates == 0 and not figures.problems
    await applied.apply_transition(Transition("mf:a", "h:1:1"))  # Store rule 3 broken
    check_commits(ledger, figures)
    assert figures.duplicates == 1 and "applied more than once" in figures.problems[0]
    assert ledger.first_progress_after(0.0) is not None


def test_report_table_sums_per_backend_and_takes_median_recovery(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = [
        Figures("a", "redis", workflows=10, faults=1, recovery_worker_kill=[1.0]),
        Figures("b", "redis", workflows=5, faults=2, recovery_worker_kill=[3.0], recovery_server_restart=[0.5]),
        Figures("c", "sqlite", workflows=1, faults=1),
    ]
    path = tmp_path / "r.jsonl"
    path.write_text("".join(json.dumps(r.__dict__) + "\n" for r in rows))
    assert fault_report.main([str(path)]) == 0
    out = capsys.readouterr().out
    assert "| redis | 2 | 15 | 3 | 0 | 0 | 0 | 2.00 s (n=2) | 0.50 s (n=1) | – |" in out
    assert "| sqlite | 1 | 1 | 1 | 0 | 0 | 0 | – | – | – |" in out
