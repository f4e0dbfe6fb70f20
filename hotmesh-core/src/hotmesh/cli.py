"""Command line.

``python -m hotmesh providers`` lists installed providers; ``doctor`` connects to the configured
backends and reports each role's server version, capabilities and real durability (promise C9),
and with ``--require-durability`` fails when a backend holding state acknowledges writes that a
crash could lose (the durability lint, catalogue B-9);
``migrate`` prepares the backends for a namespace ahead of a deploy (opening each provider creates
its schema, tables, streams or buckets; PostgreSQL runs its versioned migrations).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import sys
from collections.abc import Sequence

from hotmesh.config import HotMeshConfig, load_config
from hotmesh.errors import CapabilityNotSupportedError, HotMeshError, ProviderNotFoundError
from hotmesh.providers import ProviderRegistry, Role, Survives, default_registry

STATEFUL = (Role.STORE, Role.STREAM, Role.SEARCH)
"""The roles whose durability matters: pub/sub only announces what the others hold."""


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


async def check_backends(
    config: HotMeshConfig, *, registry: ProviderRegistry | None = None, require: Survives | None = None
) -> tuple[list[str], bool]:
    """Open every role's provider once; describe it. Returns (lines, all required roles ok);
    with ``require``, a state-holding role whose writes survive less is not ok."""
    registry = registry or default_registry()
    lines: list[str] = []
    ok = True
    for role in Role:
        url = config.describe()[role.value]
        try:
            provider = registry.create(role, config.url_for(role), namespace=config.namespace)
        except ProviderNotFoundError as exc:
            optional = role is Role.SEARCH and not config.explicit(role)
            ok = ok and optional
            lines.append(f"{role.value:<7} {url}: {'not available (optional)' if optional else 'ERROR'}: {exc}")
            continue
        except HotMeshError as exc:  # a bad URL or option (ConfigError), named without its value
            ok = False
            lines.append(f"{role.value:<7} {url}: ERROR: {exc}")
            continue
        try:
            await provider.open()
            info = await provider.info()
            caps = ",".join(sorted(c.value for c in provider.capabilities)) or "-"
            version = f" {info.server_version}" if info.server_version else ""
            survives = info.survives.label if info.survives is not None else "unknown"
            lines.append(
                f"{role.value:<7} {url}: {info.name}{version}; durability: {info.durability or '?'}"
                f" (survives: {survives}); capabilities: {caps}"
            )
            if require is not None and role in STATEFUL and (info.survives is None or info.survives < require):
                ok = False
                lines.append(f"{'':<7} ERROR: survives {survives}, less than the required {require.label}")
        except CapabilityNotSupportedError as exc:
            optional = role is Role.SEARCH and not config.explicit(role)
            ok = ok and optional
            lines.append(f"{role.value:<7} {url}: {'not available (optional)' if optional else 'ERROR'}: {exc}")
        except HotMeshError as exc:
            ok = False
            lines.append(f"{role.value:<7} {url}: ERROR: {exc}")
        finally:
            await provider.aclose()
    return lines, ok


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m hotmesh`` and the ``hotmesh`` script."""
    parser = argparse.ArgumentParser(prog="hotmesh", description="HotMesh command line")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("providers", help="list installed providers, their roles and capabilities")
    for name, text in (
        ("doctor", "connect to the configured backends; show versions, capabilities and durability"),
        ("migrate", "prepare the backends of a namespace (schemas, tables, streams) ahead of a deploy"),
    ):
        command = commands.add_parser(name, help=text)
        command.add_argument("--url", help="one URL for every role (default: HOTMESH_URL / hotmesh.toml)")
        command.add_argument("--namespace", help="the namespace (default: HOTMESH_NAMESPACE or 'hotmesh')")
        command.add_argument(
            "--require-durability",
            choices=[level.label for level in Survives],
            help="exit 1 when the store, stream or search backend acknowledges writes that a server process"
            " crash (process-crash) or a power loss (power-loss) could lose, by its own settings",
        )
    args = parser.parse_args(argv)
    if args.command == "providers":
        print(list_providers())
        return 0
    try:
        config = load_config(url=args.url, namespace=args.namespace)
    except HotMeshError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    require = Survives.from_label(args.require_durability) if args.require_durability else None
    lines, ok = asyncio.run(check_backends(config, require=require))
    print(f"namespace {config.namespace!r}")
    print("\n".join(lines))
    if args.command == "migrate" and ok:
        print("ready: every role is prepared for this namespace")
    return 0 if ok else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
