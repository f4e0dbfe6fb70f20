"""Meta-tests: the kit passes on the memory reference and catches deliberately broken providers."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

import hotmesh.providers as providers
import hotmesh_conformance.suite as suite_pkg

HERE = Path(__file__).parent
REGISTER = '''
from hotmesh.providers import ProviderSpec, Role, default_registry

_CAPS = {Role.STORE: ("store.ttl", "store.atomic_outbox"), Role.STREAM: ("stream.delay", "stream.extend"),
         Role.SEARCH: ("search.sort",)}
for _role, _name, _cls in [
    (Role.STREAM, "dropping-stream", "DroppingStream"),
    (Role.STREAM, "unfenced-stream", "UnfencedStream"),
    (Role.STORE, "twice-store", "TwiceStore"),
    (Role.STORE, "leaky-timer-store", "LeakyTimerStore"),
    (Role.STORE, "dead-store", "DeadStore"),
    (Role.SEARCH, "offsetless-search", "OffsetlessSearch"),
]:
    default_registry().add(ProviderSpec(role=_role, name=_name, schemes=(_name,),
        factory=f"broken_providers:{_cls}", distribution="hotmesh-conformance",
        capabilities=_CAPS[_role]))
'''


@pytest.fixture
def kit(pytester: pytest.Pytester) -> pytest.Pytester:
    """A pytester directory where the broken providers are importable and registered."""
    pytester.makepyfile(broken_providers=(HERE / "broken_providers.py").read_text())
    pytester.makeconftest(REGISTER)
    pytester.syspathinsert()
    return pytester


def run(kit: pytest.Pytester, *args: str) -> pytest.RunResult:
    return kit.runpytest("-p", "no:cacheprovider", "-rfEsx", "--hotmesh-profile=ci", *args)


def test_suite_passes_on_memory(kit: pytest.Pytester) -> None:
    """The whole suite is green on memory:// (with its strict xfails file)."""
    result = run(kit, "--pyargs", "hotmesh_conformance.suite", "--hotmesh-url=memory://",
                 f"--hotmesh-xfails={HERE / 'memory-xfails.txt'}")
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) == 0 and outcomes.get("errors", 0) == 0, result.stdout.str()[-3000:]
    assert outcomes.get("passed", 0) > 100
    result.stdout.fnmatch_lines(["*store: memory:// -> memory from hotmesh-core*capabilities:*"])


def test_catches_stream_that_drops_unacked(kit: pytest.Pytester) -> None:
    """Stream rule 4: a stream that never redelivers unacked work fails the redelivery tests."""
    result = run(kit, "--pyargs", "hotmesh_conformance.suite.test_stream",
                 "--hotmesh-stream-url=dropping-stream://")
    result.stdout.fnmatch_lines([
        "FAILED *::test_unacked_message_is_redelivered_after_visibility_timeout*",
        "FAILED *::test_release_makes_pending_deliverable_now*",
    ])


def test_catches_stream_whose_extend_ignores_the_delivery_count(kit: pytest.Pytester) -> None:
    """Stream rule 11: renewing a lease lost to a redelivery fails the fence test and the machine."""
    result = run(kit, "--pyargs", "hotmesh_conformance.suite.test_stream", "hotmesh_conformance.suite.test_stateful",
                 "--hotmesh-stream-url=unfenced-stream://", "-k", "extend or stream_machine")
    result.stdout.fnmatch_lines_random([
        "FAILED *::test_extend_renews_only_the_current_delivery*",
        "FAILED *::test_stream_machine*",
    ])
    assert "test_extend_keeps_a_delivery_being_worked_on_from_redelivery" not in result.stdout.str().split("short test summary")[-1]


def test_catches_store_without_idempotency(kit: pytest.Pytester) -> None:
    """Store rule 3: a store that applies a repeated step again fails the idempotency tests."""
    result = run(kit, "--pyargs", "hotmesh_conformance.suite.test_store",
                 "--hotmesh-store-url=twice-store://", "-k", "duplicate or concurrent_duplicates")
    result.stdout.fnmatch_lines([
        "FAILED *::test_transition_applies_then_is_duplicate*",
        "FAILED *::test_concurrent_duplicates_apply_once*",
    ])


def test_catches_timer_claimable_twice(kit: pytest.Pytester) -> None:
    """Store rule 10: a store whose leases do not hold fails the exactly-one-claimer tests."""
    result = run(kit, "--pyargs", "hotmesh_conformance.suite.test_store",
                 "--hotmesh-store-url=leaky-timer-store://", "-k", "timer")
    result.stdout.fnmatch_lines([
        "FAILED *::test_timers_claimed_by_exactly_one_of_many*",
        "FAILED *::test_complete_timer_with_token*",
    ])


def test_catches_search_that_ignores_offset(kit: pytest.Pytester) -> None:
    """Search rule 4: the explicit paging test and the brute-force property test both fail."""
    result = run(kit, "--pyargs", "hotmesh_conformance.suite.test_search",
                 "--hotmesh-search-url=offsetless-search://", "-k", "offset or brute_force")
    result.stdout.fnmatch_lines([
        "FAILED *::test_total_offset_limit_and_id_order*",
        "FAILED *::test_queries_agree_with_brute_force*",
    ])


def test_stateful_machine_catches_dropping_stream(kit: pytest.Pytester) -> None:
    """Stream rule 9 via the state machine: released work that never returns is caught."""
    result = run(kit, "--pyargs", "hotmesh_conformance.suite.test_stateful",
                 "--hotmesh-stream-url=dropping-stream://", "-k", "stream_machine")
    result.stdout.fnmatch_lines(["FAILED *::test_stream_machine*"])


def test_unreachable_backend_is_an_error_not_a_skip(kit: pytest.Pytester) -> None:
    """A backend that cannot be opened is an ERROR; a role the scheme does not serve is a skip."""
    result = run(kit, "--pyargs", "hotmesh_conformance.suite.test_store",
                 "--hotmesh-store-url=dead-store://", "-k", "test_create_job_only_if_absent")
    outcomes = result.parseoutcomes()
    assert outcomes.get("errors") == 1 and "skipped" not in outcomes, outcomes
    skipped = run(kit, "--pyargs", "hotmesh_conformance.suite.test_search",
                  "--hotmesh-search-url=twice-store://", "-k", "test_missing_index")
    skipped.assert_outcomes(skipped=1)
    skipped.stdout.fnmatch_lines(["*no search provider for scheme 'twice-store'*"])


def test_xfails_file_is_strict_and_warns_on_stale_entries(kit: pytest.Pytester) -> None:
    """Known failures are strict: a listed test that passes fails the run; stale lines warn."""
    xfails = kit.path / "xfails.txt"
    xfails.write_text(
        "# comment\n"
        "test_store.py::test_cache_round_trip   # pretend it is broken\n"
        "test_store.py::test_no_such_test       # stale\n"
    )
    result = run(kit, "--pyargs", "hotmesh_conformance.suite.test_store", f"--hotmesh-xfails={xfails}",
                 "-k", "test_cache_round_trip")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*XPASS(strict)*pretend it is broken*", "*test_no_such_test*matches no*"])


def test_capability_skip_names_provider_and_capability(kit: pytest.Pytester) -> None:
    """requires(): an undeclared capability is a skip whose reason names provider and capability."""
    kit.makeconftest(REGISTER + '''
from hotmesh.backends.memory import MemoryStore
default_registry().add(ProviderSpec(role=Role.STORE, name="plain-store", schemes=("plain-store",),
    factory="broken_providers:PlainStore", distribution="hotmesh-conformance"))
''')
    (kit.path / "broken_providers.py").write_text(
        (HERE / "broken_providers.py").read_text()
        + "\n\nclass PlainStore(_Renamed, MemoryStore):\n"
        + "    declared = frozenset()  # no TTL: expire must raise CapabilityNotSupportedError\n"
    )
    result = run(kit, "--pyargs", "hotmesh_conformance.suite.test_store",
                 "--hotmesh-store-url=plain-store://", "-k", "ttl or expire")
    result.stdout.fnmatch_lines(["*PlainStore (memory) does not declare store.ttl*"])
    # The undeclared side is checked: memory ignores TTL only if it is declared, so this fails.
    result.stdout.fnmatch_lines(["FAILED *test_expire_without_ttl_capability_raises*"])


RULE_LINE = re.compile(r"^\s+(\d+)\.\s", re.MULTILINE)
CONTRACTS = {
    "Provider": providers.Provider,
    "Store": providers.Store,
    "Stream": providers.Stream,
    "Sub": providers.Sub,
    "Search": providers.Search,
}


def test_every_numbered_rule_is_cited_by_a_suite_test() -> None:
    """The kit is the specification: each numbered rule of each contract has a test citing it."""
    suite_dir = Path(suite_pkg.__file__).parent
    text = "\n".join(p.read_text() for p in suite_dir.glob("test_*.py"))
    text += (suite_dir.parent / "machines.py").read_text()
    missing = []
    for name, protocol in CONTRACTS.items():
        rules = {int(n) for n in RULE_LINE.findall(inspect.getdoc(protocol) or "")}
        assert rules, f"no numbered rules found in {name}"
        for number in sorted(rules):
            cited = re.search(rf"{name} rules? (?:[\d, /and-]*\b)?{number}\b", text)
            if not cited:
                missing.append(f"{name} rule {number}")
    assert not missing, f"rules no suite test cites: {missing}"
