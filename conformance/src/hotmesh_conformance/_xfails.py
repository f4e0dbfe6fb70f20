"""The known-failures file: test-id substrings applied as STRICT xfails.

Format, one entry a line (``#`` starts the reason; blank lines and lines starting with ``#`` are
ignored)::

    test_stream.py::test_release_delay_defers_redelivery   # NATS naks with delay late; issue #12

An entry marks every collected test whose node id contains it. An unexpected pass fails the run
(strict), so a fixed bug forces the entry's removal; an entry that matches no collected test is
reported with a warning, so the file cannot rot silently.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hotmesh.errors import ConfigError


@dataclass(frozen=True)
class XfailEntry:
    """One line of the file."""

    pattern: str
    reason: str
    line: int


def parse_xfails(path: Path) -> list[XfailEntry]:
    """Read the file; a missing file is a ConfigError (a typo must not silently xfail nothing)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the hotmesh xfails file {path}: {exc}") from exc
    entries: list[XfailEntry] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        pattern, _, reason = line.partition("#")
        pattern = pattern.strip()
        if not pattern:
            continue
        entries.append(
            XfailEntry(pattern, reason.strip() or f"listed in {path.name}:{number}", number)
        )
    return entries
