"""Run scaffolding shared by ``bench_all.py``, ``extra_bench.py`` and ``peers/*.py``.

Percentiles, JSON result files, the machine and version description, and server-side operation
counters (Redis ``INFO commandstats``, PostgreSQL ``pg_stat_database``, JetStream account API
totals), plus a private PostgreSQL database per run so that ``pg_stat_database`` counts only us and
one ``DROP DATABASE`` cleans everything up.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib.metadata
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"

REDIS_URL = os.environ.get("HOTMESH_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
POSTGRES_URL = os.environ.get("HOTMESH_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
NATS_URL = os.environ.get("HOTMESH_BENCH_NATS_URL", "nats://127.0.0.1:4222")


def pct(samples_s: Sequence[float]) -> dict[str, Any]:
    """n, p50, p95, p99, mean in ms of samples in seconds (nearest rank)."""
    ordered = sorted(samples_s)
    if not ordered:
        return {"n": 0, "p50_ms": None, "p95_ms": None, "p99_ms": None, "mean_ms": None}

    def rank(q: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))] * 1000

    return {
        "n": len(ordered),
        "p50_ms": statistics.median(ordered) * 1000,
        "p95_ms": rank(0.95),
        "p99_ms": rank(0.99),
        "mean_ms": statistics.fmean(ordered) * 1000,
    }


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def write_json(path: Path | str, data: dict[str, Any]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    return path


def uid(prefix: str = "hmbench") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


# ---------------------------------------------------------------------------------------------
# Machine and versions
# ---------------------------------------------------------------------------------------------


def _cmd(*argv: str) -> str | None:
    if shutil.which(argv[0]) is None:
        return None
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout.strip() or None
    except Exception:
        return None


def machine() -> dict[str, Any]:
    cpu = None
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = None
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / 2**20:.1f} GiB"
    return {
        "platform": platform.platform(),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "memory": mem,
        "python": platform.python_version(),
        "node": _cmd("node", "--version"),
        "load_avg": [round(x, 2) for x in os.getloadavg()],
    }


def package_versions(names: Sequence[str] = (
    "hotmesh", "hotmesh-redis", "hotmesh-postgres", "hotmesh-nats", "redis", "hiredis", "psycopg", "nats-py",
    "dbos", "SQLAlchemy", "celery", "kombu", "matplotlib", "py-spy",
)) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_commit() -> str | None:
    return _cmd("git", "-C", str(HERE.parent), "rev-parse", "--short", "HEAD")


async def server_versions(redis_url: str | None, pg_url: str | None, nats_url: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if redis_url:
        with contextlib.suppress(Exception):
            import redis.asyncio as aioredis

            client = aioredis.Redis.from_url(redis_url)
            info = await client.info("server")
            out["redis"] = info.get("redis_version")
            out["redis_modules"] = [m.get("name") for m in (await client.module_list())] if hasattr(client, "module_list") else None
            await client.aclose()
    if pg_url:
        with contextlib.suppress(Exception):
            import psycopg

            async with await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as conn:
                row = await (await conn.execute("SHOW server_version")).fetchone()
                out["postgres"] = row[0] if row else None
                settings = {}
                for name in ("fsync", "synchronous_commit", "max_connections", "shared_preload_libraries"):
                    row = await (await conn.execute(f"SHOW {name}")).fetchone()
                    settings[name] = row[0] if row else None
                out["postgres_settings"] = settings
                row = await (await conn.execute(
                    "SELECT count(*) FROM pg_extension WHERE extname = 'pg_stat_statements'")).fetchone()
                out["pg_stat_statements"] = bool(row and row[0])
    if nats_url:
        with contextlib.suppress(Exception):
            import nats

            client = await nats.connect(nats_url)
            out["nats"] = client._server_info.get("version")
            out["nats_jetstream"] = bool(client._server_info.get("jetstream"))
            await client.close()
    return out


# ---------------------------------------------------------------------------------------------
# Server-side operation counters (shared servers: other clients' traffic is included)
# ---------------------------------------------------------------------------------------------


async def redis_commandstats(url: str) -> dict[str, int]:
    """calls per command from ``INFO commandstats`` (server-wide)."""
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url)
    try:
        info = await client.info("commandstats")
    finally:
        await client.aclose()
    return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in info.items() if isinstance(v, dict)}


def counter_delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0) > 0}


async def _pg_connect(url: str) -> Any:
    """Connect, retrying for ~15 s while the shared server says "too many clients"."""
    import asyncio

    import psycopg

    for attempt in range(30):
        try:
            return await psycopg.AsyncConnection.connect(url, autocommit=True)
        except psycopg.OperationalError as exc:
            if "too many clients" not in str(exc) or attempt == 29:
                raise
            await asyncio.sleep(0.5)
    raise AssertionError("unreachable")


def _pg_connect_sync(url: str) -> Any:
    import time

    import psycopg

    for attempt in range(30):
        try:
            return psycopg.connect(url, autocommit=True)
        except psycopg.OperationalError as exc:
            if "too many clients" not in str(exc) or attempt == 29:
                raise
            time.sleep(0.5)
    raise AssertionError("unreachable")


async def pg_database_stats(url: str) -> dict[str, int]:
    """xact_commit / rollback / tuples of the URL's database (``pg_stat_database``; ~0.5 s stale)."""
    dbname = urlsplit(url).path.lstrip("/")
    async with await _pg_connect(admin_url(url)) as conn:
        await conn.execute("SELECT pg_stat_clear_snapshot()")
        row = await (await conn.execute(
            "SELECT xact_commit, xact_rollback, tup_inserted, tup_updated, tup_deleted, tup_returned"
            " FROM pg_stat_database WHERE datname = %s", (dbname,))).fetchone()
    if row is None:
        return {}
    keys = ("xact_commit", "xact_rollback", "tup_inserted", "tup_updated", "tup_deleted", "tup_returned")
    return dict(zip(keys, (int(v) for v in row), strict=True))


async def nats_js_api_total(url: str) -> dict[str, int]:
    """JetStream API requests of the account so far (``$JS.API.INFO`` -> api.total / errors)."""
    import nats

    client = await nats.connect(url)
    try:
        info = await client.jetstream().account_info()
        return {"js_api_total": int(info.api.total), "js_api_errors": int(info.api.errors)}
    finally:
        await client.close()


# ---------------------------------------------------------------------------------------------
# A private PostgreSQL database per run
# ---------------------------------------------------------------------------------------------


def admin_url(url: str) -> str:
    """The same server, database ``postgres``."""
    parts = urlsplit(url.replace("postgresql+psycopg://", "postgresql://", 1))
    return urlunsplit((parts.scheme, parts.netloc, "/postgres", parts.query, parts.fragment))


def with_database(url: str, dbname: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{dbname}", parts.query, parts.fragment))


def create_database(url: str, dbname: str) -> str:
    """CREATE DATABASE ``dbname`` on ``url``'s server; returns its URL."""
    with _pg_connect_sync(admin_url(url)) as conn:
        conn.execute(f'CREATE DATABASE "{dbname}"')
    return with_database(url, dbname)


def drop_database(url: str, dbname: str) -> None:
    with _pg_connect_sync(admin_url(url)) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


@contextlib.contextmanager
def private_database(url: str, prefix: str = "hmbench") -> Iterator[str]:
    name = uid(prefix)
    db_url = create_database(url, name)
    try:
        yield db_url
    finally:
        drop_database(url, name)


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
        parts = handle.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")


def log(message: str) -> None:
    print(f"[{dt.datetime.now(dt.UTC).strftime('%H:%M:%S')}] {message}", flush=True)


def python() -> str:
    return sys.executable


# -- mixed configurations (issue 8): "<url> store=<url> search=<url>" ----------------------------
ROLES = ("store", "stream", "sub", "search")


def split_mix(url: str) -> tuple[str, dict[str, str]]:
    """``"nats://h:4222 store=postgresql://… search=postgresql://…"`` -> (main URL, role URLs).

    A benchmark URL may name other backends for some roles after the main one, separated by
    spaces (URLs have none): the main URL serves every role not named.
    """
    head, *rest = url.split()
    roles: dict[str, str] = {}
    for part in rest:
        role, sep, value = part.partition("=")
        if not sep or role not in ROLES or not value:
            raise ValueError(f"bad role override {part!r} in benchmark URL {url!r} (want role=url)")
        roles[role] = value
    return head, roles


def config_for(url: str, namespace: str) -> Any:
    """The HotMeshConfig of a benchmark URL (plain or mixed) in ``namespace``."""
    from hotmesh.config import HotMeshConfig

    head, roles = split_mix(url)
    return HotMeshConfig(url=head, namespace=namespace, **roles)


def schemes_of(url: str) -> list[str]:
    """Every URL scheme a (mixed) benchmark URL talks to, main one first."""
    head, roles = split_mix(url)
    found = [urlsplit(head).scheme.lower()]
    for value in roles.values():
        scheme = urlsplit(value).scheme.lower()
        if scheme not in found:
            found.append(scheme)
    return found
