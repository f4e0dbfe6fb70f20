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
