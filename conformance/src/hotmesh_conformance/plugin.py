"""The pytest plugin of the kit: options, report header, hypothesis profiles, xfails, fixtures.

It is loaded through the ``pytest11`` entry point wherever the kit is installed, so it stays
passive: it only adds options, markers and fixtures, and prints its header only when a run
targets the kit (``--hotmesh-*`` options, ``HOTMESH_*`` env or ``hotmesh_conformance`` in args).
"""

from __future__ import annotations

import importlib.metadata
import os
import warnings
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any, Protocol

import anyio
import pytest
from hypothesis import HealthCheck, settings

from hotmesh.errors import (
    CapabilityNotSupportedError,
    HotMeshError,
    ProviderError,
    ProviderNotFoundError,
    redact_url,
)
from hotmesh.providers import Role, Survives, default_registry
from hotmesh_conformance._xfails import XfailEntry, parse_xfails
from hotmesh_conformance.helpers import FORBIDS_MARK, REQUIRES_MARK, gate, new_namespace

DEFAULT_URL = "memory://"
ROLES: tuple[Role, ...] = (Role.STORE, Role.STREAM, Role.SUB, Role.SEARCH)
_URLS_KEY = pytest.StashKey[dict[Role, str]]()
_XFAILS_KEY = pytest.StashKey[list[XfailEntry]]()
_PROFILE_KEY = pytest.StashKey[str]()


class MakeProvider(Protocol):
    """The ``make_provider`` fixture's callable."""

    def __call__(
        self,
        role: Role | str,
        namespace: str | None = None,
        url: str | None = None,
        *,
        open: bool = True,
    ) -> Awaitable[Any]:
        """Create (through the registry), open and track a provider for teardown."""
        ...


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add the kit's options (env defaults are resolved in pytest_configure)."""
    group = parser.getgroup("hotmesh", "HotMesh conformance kit")
    group.addoption(
        "--hotmesh-url",
        default=None,
        help="provider URL for every role (default: env HOTMESH_URL, else memory://)",
    )
    for role in ROLES:
        group.addoption(
            f"--hotmesh-{role.value}-url",
            default=None,
            help=f"URL of the {role.value} provider (env HOTMESH_{role.value.upper()}_URL;"
            " default: the main URL)",
        )
    group.addoption(
        "--hotmesh-xfails",
        default=None,
        help="file of test-id substrings and reasons applied as strict xfails",
    )
    group.addoption(
        "--hotmesh-profile",
        default=None,
        choices=("dev", "ci", "nightly"),
        help="run size: hypothesis examples and the fault suite's load (ci: what CI runs in its"
        " time budget; nightly: the full-size variants, e.g. 10,000 timers; default: ci when env"
        " CI is set, else dev)",
    )
    group.addoption(
        "--hotmesh-require-durability",
        default=None,
        choices=[level.label for level in Survives],
        help="fail the durability lint (B-9) when a store, stream or search backend acknowledges writes"
        " that a server process crash (process-crash) or a power loss (power-loss) could lose, by its"
        " own settings (default: report only)",
    )
    parser.addini("hotmesh_xfails", "default for --hotmesh-xfails", default="")


def resolve_urls(config: pytest.Config) -> dict[Role, str]:
    """Per-role URLs: option, then env, then the main URL (option, env, memory://)."""
    main = config.getoption("hotmesh_url") or os.environ.get("HOTMESH_URL") or DEFAULT_URL
    urls: dict[Role, str] = {}
    for role in ROLES:
        urls[role] = (
            config.getoption(f"hotmesh_{role.value}_url")
            or os.environ.get(f"HOTMESH_{role.value.upper()}_URL")
            or main
        )
    return urls


def _profile_name(config: pytest.Config) -> str:
    chosen = config.getoption("hotmesh_profile") or os.environ.get("HOTMESH_PROFILE")
    if chosen:
        return str(chosen)
    ci = os.environ.get("CI", "").strip().lower()
    return "ci" if ci not in ("", "0", "false", "no") else "dev"


def pytest_configure(config: pytest.Config) -> None:
    """Register markers and hypothesis profiles, read the xfails file."""
    config.addinivalue_line(
        "markers", f"{REQUIRES_MARK}(*capabilities): run only if the provider declares them"
    )
    config.addinivalue_line(
        "markers", f"{FORBIDS_MARK}(*capabilities): run only if the provider does not declare them"
    )
    # Provider calls are network I/O: no deadline. Function-scoped provider fixtures are shared
    # by the examples of one @given test on purpose: each example works under its own index or
    # stream name, so sharing is safe.
    common: dict[str, Any] = {
        "deadline": None,
        "suppress_health_check": [HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    }
    settings.register_profile("ci", max_examples=25, derandomize=True, database=None, **common)
    settings.register_profile("dev", max_examples=15, **common)
    settings.register_profile("nightly", max_examples=200, **common)
    profile = _profile_name(config)
    config.stash[_PROFILE_KEY] = profile
    # Passive unless the run targets the kit: other test suites in the same environment keep
    # their own hypothesis settings.
    if _targets_kit(config) and not config.getoption("hypothesis_profile", None):
        settings.load_profile(profile)
    config.stash[_URLS_KEY] = resolve_urls(config)
    xfails = config.getoption("hotmesh_xfails") or config.getini("hotmesh_xfails")
    config.stash[_XFAILS_KEY] = parse_xfails(Path(str(xfails))) if xfails else []


def _targets_kit(config: pytest.Config) -> bool:
    if any(config.getoption(f"hotmesh_{r.value}_url") for r in ROLES):
        return True
    if config.getoption("hotmesh_url") or config.getoption("hotmesh_xfails"):
        return True
    if any(key.startswith("HOTMESH_") for key in os.environ):
        return True
    return any("hotmesh_conformance" in str(arg) for arg in config.args)


def pytest_report_header(config: pytest.Config) -> list[str]:
    """Name per role the URL, provider, distribution, capabilities and durability."""
    if not _targets_kit(config):
        return []
    lines = [f"hotmesh-conformance {_version('hotmesh-conformance')}, "
             f"hotmesh-core {_version('hotmesh-core')}"]
    for role, url in config.stash[_URLS_KEY].items():
        lines.append(f"  {role.value}: {redact_url(url)} -> {anyio.run(_describe, role, url)}")
    seed = config.getoption("hypothesis_seed", None)
    profile = config.getoption("hypothesis_profile", None) or config.stash[_PROFILE_KEY]
    derandomized = settings.get_profile(profile).derandomize if profile in ("ci", "dev", "nightly") else False
    seed_text = seed if seed is not None else ("derandomized" if derandomized else "random")
    lines.append(f"  hypothesis: profile={profile} seed={seed_text}")
    xfails = config.getoption("hotmesh_xfails") or config.getini("hotmesh_xfails")
    if xfails:
        lines.append(f"  xfails: {xfails} ({len(config.stash[_XFAILS_KEY])} entries)")
    return lines


async def _describe(role: Role, url: str) -> str:
    try:
        spec = default_registry().for_url(role, url)
    except ProviderNotFoundError as exc:
        return f"not provided (skipped): {exc}"
    except HotMeshError as exc:
        return f"invalid: {exc}"
    head = f"{spec.name} from {spec.distribution} {_version(spec.distribution)}"
    try:
        provider = spec.create(url, namespace=new_namespace(), options={})
        await provider.open()
        try:
            caps = ", ".join(sorted(c.value for c in provider.capabilities)) or "none"
            info = await provider.info()
            await provider.purge()
        finally:
            await provider.aclose()
    except HotMeshError as exc:
        return f"{head}; UNAVAILABLE: {exc}"
    survives = info.survives.label if info.survives is not None else "unknown"
    return f"{head}; capabilities: {caps}; durability: {info.durability or '?'} (survives: {survives})" + (
        f"; server {info.server_version}" if info.server_version else ""
    )


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "(not installed)"


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Apply the xfails file as strict xfails; warn about entries that match nothing."""
    entries = config.stash[_XFAILS_KEY]
    if not entries:
        return
    used: set[XfailEntry] = set()
    for item in items:
        ids = (item.nodeid, _file_scoped_id(item))
        for entry in entries:
            if any(entry.pattern in node_id for node_id in ids):
                item.add_marker(pytest.mark.xfail(strict=True, reason=entry.reason))
                used.add(entry)
    for entry in entries:
        if entry not in used:
            warnings.warn(
                pytest.PytestWarning(
                    f"hotmesh xfails entry {entry.pattern!r} (line {entry.line}) matches no"
                    " collected test: remove it if it is stale"
                ),
                stacklevel=1,
            )


def _file_scoped_id(item: pytest.Item) -> str:
    """``test_file.py::test_name[param]`` whatever the rootdir (``--pyargs`` runs from
    site-packages produce node ids relative to a far-away rootdir)."""
    _, _, rest = item.nodeid.partition("::")
    return f"{item.path.name}::{rest or item.name}"


@pytest.fixture(scope="session")
def hotmesh_urls(pytestconfig: pytest.Config) -> dict[Role, str]:
    """The URL of each role for this run."""
    urls: dict[Role, str] = pytestconfig.stash[_URLS_KEY]
    return dict(urls)


@pytest.fixture(scope="session")
def hotmesh_required_durability(pytestconfig: pytest.Config) -> Survives | None:
    """What ``--hotmesh-require-durability`` asks of every state-holding backend, if anything."""
    label = pytestconfig.getoption("hotmesh_require_durability")
    return Survives.from_label(label) if label else None


@pytest.fixture(scope="session")
def hotmesh_profile(pytestconfig: pytest.Config) -> str:
    """The run's size profile: ``dev``, ``ci`` or ``nightly`` (``--hotmesh-profile``)."""
    return str(pytestconfig.stash[_PROFILE_KEY])


@pytest.fixture
def hotmesh_namespace() -> str:
    """A fresh namespace for this test (Provider rule 3 isolates tests from each other)."""
    return new_namespace()


@pytest.fixture
async def make_provider(
    hotmesh_urls: dict[Role, str], hotmesh_namespace: str
) -> AsyncIterator[MakeProvider]:
    """Create providers through the registry; purge, check ``is_empty()`` and close at teardown.

    A role no installed provider serves for the URL's scheme is a skip (with the registry's
    message); an unreachable backend raises from ``open()``, an error, never a skip.
    """
    created: list[tuple[Role, str, str, Any]] = []

    async def factory(
        role: Role | str,
        namespace: str | None = None,
        url: str | None = None,
        *,
        open: bool = True,
    ) -> Any:
        role = Role(role)
        url = url or hotmesh_urls[role]
        namespace = namespace or hotmesh_namespace
        try:
            spec = default_registry().for_url(role, url)
        except ProviderNotFoundError as exc:
            pytest.skip(str(exc))
        provider = spec.create(url, namespace=namespace, options={})
        # With open=False the test opens the provider itself; probe with a throwaway instance so a
        # server that lacks the role is still a skip rather than a failure inside the test.
        probe = provider if open else spec.create(url, namespace=namespace, options={})
        try:
            await probe.open()
        except CapabilityNotSupportedError as exc:
            # The server lacks the role (e.g. Redis without its query engine): a documented
            # limit of that server, not an outage, so a skip with the provider's reason.
            await probe.aclose()
            pytest.skip(f"{role.value} unavailable at {redact_url(url)}: {exc}")
        if not open:
            await probe.aclose()
            # Any other failure (unreachable backend) propagates: an ERROR, never a skip; there
            # is nothing to clean up for a provider that never opened.
        created.append((role, url, namespace, provider))
        return provider

    yield factory
    problems: list[str] = []
    for role, url, namespace, provider in reversed(created):
        await _cleanup(role, url, namespace, provider, problems)
    assert not problems, "Provider rule 4: " + "; ".join(problems)


async def _cleanup(role: Role, url: str, namespace: str, provider: Any, problems: list[str]) -> None:
    try:
        await provider.purge()
        target = provider
    except ProviderError:
        # The test closed (or never opened) it: clean up through a fresh instance.
        target = default_registry().create(role, url, namespace=namespace)
        await target.open()
        await target.purge()
    try:
        if not await target.is_empty():
            problems.append(f"{role.value} namespace {namespace} not empty after purge()")
    finally:
        await target.aclose()
        if target is not provider:
            await provider.aclose()


async def _role_fixture(
    role: Role, make_provider: MakeProvider, request: pytest.FixtureRequest
) -> Any:
    provider = await make_provider(role)
    gate(request.node, role.value, provider)
    return provider


@pytest.fixture
async def store(make_provider: MakeProvider, request: pytest.FixtureRequest) -> Any:
    """An open Store on a fresh namespace (skipped if the URL has no store provider)."""
    return await _role_fixture(Role.STORE, make_provider, request)


@pytest.fixture
async def stream(make_provider: MakeProvider, request: pytest.FixtureRequest) -> Any:
    """An open Stream on the test's namespace."""
    return await _role_fixture(Role.STREAM, make_provider, request)


@pytest.fixture
async def sub(make_provider: MakeProvider, request: pytest.FixtureRequest) -> Any:
    """An open Sub on the test's namespace."""
    return await _role_fixture(Role.SUB, make_provider, request)


@pytest.fixture
async def search(make_provider: MakeProvider, request: pytest.FixtureRequest) -> Any:
    """An open Search on the test's namespace."""
    return await _role_fixture(Role.SEARCH, make_provider, request)


