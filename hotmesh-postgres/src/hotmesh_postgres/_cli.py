"""``python -m hotmesh_postgres migrate [--url] URL --namespace NS``: migrations ahead of deploys.

Teams that start processes with ``options={"migrate": False}`` run this once per release; it is
safe to run concurrently and repeatedly (advisory lock, idempotent, never destructive).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

import psycopg
from psycopg import AsyncConnection

from hotmesh.errors import HotMeshError, ProviderError, redact_url
from hotmesh_postgres import _schema
from hotmesh_postgres._base import driver_url


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


async def migrate_url(url: str, namespace: str) -> tuple[int, list[int]]:
    """Apply pending migrations of ``namespace``; return (version now, versions applied)."""
    names = _schema.SchemaNames.for_namespace(namespace)
    try:
        async with await AsyncConnection.connect(
            driver_url(url), autocommit=True, connect_timeout=10
        ) as conn:
            applied = await _schema.migrate(conn, names)
            return await _schema.current_version(conn, names), applied
    except psycopg.Error as exc:
        raise ProviderError(f"postgres at {redact_url(url)}: migrate failed: {_first_line(exc)}") from exc


async def status_url(url: str, namespace: str) -> int:
    """The applied schema version of ``namespace`` (0: not created)."""
    names = _schema.SchemaNames.for_namespace(namespace)
    try:
        async with await AsyncConnection.connect(
            driver_url(url), autocommit=True, connect_timeout=10
        ) as conn:
            return await _schema.current_version(conn, names)
    except psycopg.Error as exc:
        raise ProviderError(f"postgres at {redact_url(url)}: status failed: {_first_line(exc)}") from exc


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    parser = argparse.ArgumentParser(prog="python -m hotmesh_postgres")
    commands = parser.add_subparsers(dest="command", required=True)
    for name, text in (("migrate", "apply pending migrations"), ("status", "show the version")):
        command = commands.add_parser(name, help=text)
        command.add_argument("url", nargs="?", help="postgresql://user@host:port/db")
        command.add_argument("--url", dest="url_option", metavar="URL", help="same as the positional URL")
        command.add_argument("--namespace", default="hotmesh", help="default: hotmesh")
    args = parser.parse_args(argv)
    if (args.url is None) == (args.url_option is None):
        parser.error("give the database URL once: positional or --url")
    args.url = args.url or args.url_option
    try:
        if args.command == "migrate":
            version, applied = asyncio.run(migrate_url(args.url, args.namespace))
            done = ", ".join(map(str, applied)) if applied else "none (up to date)"
            print(f"namespace {args.namespace}: schema version {version}; applied {done}")
        else:
            version = asyncio.run(status_url(args.url, args.namespace))
            latest = _schema.LATEST_VERSION
            state = "up to date" if version >= latest else f"pending up to {latest}"
            print(f"namespace {args.namespace}: schema version {version} ({state})")
    except HotMeshError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
