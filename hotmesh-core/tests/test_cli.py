"""The command line: providers, doctor and migrate on the embedded backend."""

from __future__ import annotations

from pathlib import Path

import pytest

from hotmesh.cli import main


def test_doctor_reports_every_role_with_its_durability(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor", "--url", f"sqlite:///{tmp_path}/d.db", "--namespace", "cli"]) == 0
    out = capsys.readouterr().out
    for role in ("store", "stream", "sub", "search"):
        assert f"\n{role}" in out
    assert "durability: fsync" in out


def test_migrate_prepares_the_namespace(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["migrate", "--url", f"sqlite:///{tmp_path}/m.db", "--namespace", "cli"]) == 0
    assert "ready" in capsys.readouterr().out


def test_unreachable_backend_fails_without_showing_the_password(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor", "--url", "memory://x", "--namespace", "bad name"]) == 2
    assert "namespace" in capsys.readouterr().err
    code = main(["doctor", "--url", "sqlite:////nonexistent-dir/deeper/x.db?password=hunter2"])
    output = capsys.readouterr()
    assert code != 0
    assert "hunter2" not in output.out + output.err


def test_doctor_lints_durability_when_asked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """B-9: ``--require-durability`` fails on a backend whose writes a crash would lose, naming it."""
    url = f"sqlite:///{tmp_path}/d.db"
    assert main(["doctor", "--url", url, "--namespace", "cli", "--require-durability", "power-loss"]) == 0
    assert "(survives: power-loss)" in capsys.readouterr().out
    assert main(["doctor", "--url", "memory://", "--namespace", "cli", "--require-durability", "process-crash"]) == 1
    out = capsys.readouterr().out
    assert "survives nothing, less than the required process-crash" in out
    assert out.count("ERROR") == 3, "store, stream and search are linted; pub/sub is not"
