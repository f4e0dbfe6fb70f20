"""Command line: ``python -m hotmesh providers`` lists installed providers."""

from __future__ import annotations

import argparse
import importlib.metadata
import sys
from collections.abc import Sequence

from hotmesh.providers import ProviderRegistry, default_registry


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def list_providers(registry: ProviderRegistry | None = None) -> str:
    """A table of providers: role, name, schemes, distribution + version, capabilities."""
    registry = registry or default_registry()
    rows = [("ROLE", "NAME", "SCHEMES", "DISTRIBUTION", "CAPABILITIES")]
    for spec in registry.specs():
        rows.append(
            (
                spec.role.value,
                spec.name,
                ",".join(spec.schemes),
                f"{spec.distribution} {_version(spec.distribution)}",
                ",".join(spec.capabilities) or "-",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + "  " + row[-1] for row in rows]
    for name, reason in sorted(registry.broken.items()):
        lines.append(f"! plugin {name!r} failed to load: {reason}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m hotmesh`` and the ``hotmesh`` script."""
    parser = argparse.ArgumentParser(prog="hotmesh", description="HotMesh command line")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("providers", help="list installed providers, their roles and capabilities")
    args = parser.parse_args(argv)
    if args.command == "providers":
        print(list_providers())
        return 0
    return 2  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
