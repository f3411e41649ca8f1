"""The previews domain's decisions against in-memory stores: cache hit and miss, and the single-flight lease."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pytest

from flowpilot import previews, sessions
from flowpilot.errors import UpstreamUnavailable
from flowpilot.identity import Caller
from flowpilot.models import (
    CachedPreview,
    Evidence,
    EvidenceCreateRequest,
    EvidenceKind,
    PreviewKind,
    PreviewUsage,
    Session,
    SessionCreateRequest,
)
from flowpilot.store.preview_cache import WriterLease
from flowpilot.writers import WrittenDocument
from tests.unit.fakes import FakePreviewCache, Stores, install

CALLER = Caller(account_id="acct-a", engineer_id="engineer-a")
NOTE = PreviewKind.resolution_note
PACKAGE = PreviewKind.escalation_package


@dataclass
class CountingWriter:
    """A writer that says which state it was given; `fail` makes the next call raise."""

    calls: list[tuple[PreviewKind, int, int]] = field(default_factory=list)
    fail: Exception | None = None

    def write(self, kind: PreviewKind, session: Session, evidence: Sequence[Evidence]) -> WrittenDocument:
        self.calls.append((kind, session.state_version, len(evidence)))
        if self.fail is not None:
            failure, self.fail = self.fail, None
            raise failure
        usage = PreviewUsage(input_tokens=10, output_tokens=5)
        return WrittenDocument(
            markdown=f"{kind.value} at v{session.state_version}\x07\n",
            writer="counting",
            usage=usage,
            trimmed_evidence=0,
        )


@dataclass
class Clock:
    """Monotonic time that moves only when the domain sleeps; `on_sleep` runs at each poll."""

    now: float = 1_000.0
    sleeps: list[float] = field(default_factory=list)
    on_sleep: Callable[[int], None] = lambda _poll: None

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        self.on_sleep(len(self.sleeps))


@pytest.fixture
def stores(monkeypatch: pytest.MonkeyPatch) -> Stores:
    return install(monkeypatch)


@pytest.fixture
def cache(stores: Stores) -> FakePreviewCache:
    return stores.previews


@pytest.fixture
def writer(monkeypatch: pytest.MonkeyPatch) -> CountingWriter:
    counting = CountingWriter()
    monkeypatch.setattr(previews, "writer_factory", lambda: counting)
    return counting


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(previews, "waiting", previews.Waiting(sleep=fake.sleep, clock=lambda: fake.now))
    return fake


@pytest.fixture
def sid(stores: Stores) -> str:
    session = sessions.create_session(CALLER, SessionCreateRequest(title="VPN drops", problem="Every 10 minutes"))
    sessions.add_evidence(CALLER, session.id, EvidenceCreateRequest(kind=EvidenceKind.tried, text="Reinstalled"))
    return session.id


def cached(kind: PreviewKind, version: int, markdown: str = "stored\n") -> CachedPreview:
    return CachedPreview(kind=kind, state_version=version, markdown=markdown, writer="other", generated_at="t")


def test_a_miss_writes_once_and_the_repeat_is_from_cache(
    cache: FakePreviewCache, writer: CountingWriter, clock: Clock, sid: str
) -> None:
    first = previews.get_or_write(CALLER, sid, NOTE)
    second = previews.get_or_write(CALLER, sid, NOTE)
    assert writer.calls == [(NOTE, 2, 1)]
    assert (first.from_cache, second.from_cache) == (False, True)
    assert first.markdown == second.markdown == "resolution-note at v2\n"  # control characters removed
    assert first.usage == PreviewUsage(input_tokens=10, output_tokens=5)
    assert isinstance(cache.entries["acct-a", sid, NOTE, 2], CachedPreview)
    assert clock.sleeps == []


def test_both_kinds_of_one_state_coexist_and_a_change_misses(writer: CountingWriter, clock: Clock, sid: str) -> None:
    previews.get_or_write(CALLER, sid, NOTE)
    previews.get_or_write(CALLER, sid, PACKAGE)
    assert previews.get_or_write(CALLER, sid, NOTE).from_cache
    sessions.add_evidence(CALLER, sid, EvidenceCreateRequest(kind=EvidenceKind.confirmed, text="Lease is 10 min"))
    after = previews.get_or_write(CALLER, sid, NOTE)
    assert (after.from_cache, after.state_version) == (False, 3)
    assert writer.calls == [(NOTE, 2, 1), (PACKAGE, 2, 1), (NOTE, 3, 2)]


def test_a_waiter_answers_the_holders_preview_without_a_model_call(
    cache: FakePreviewCache, writer: CountingWriter, clock: Clock, sid: str
) -> None:
    assert cache.take_lease("acct-a", sid, NOTE, 2, holder="other-request", seconds=30)

    def holder_finishes(poll: int) -> None:
        if poll == 3:
            cache.put_preview("acct-a", sid, cached(NOTE, 2))

    clock.on_sleep = holder_finishes
    answer = previews.get_or_write(CALLER, sid, NOTE)
    assert (answer.from_cache, answer.markdown, answer.writer) == (True, "stored\n", "other")
    assert writer.calls == []
    assert clock.sleeps == [0.05, 0.1, 0.2]  # backoff from 50 ms


def test_a_holder_that_never_finishes_is_a_503_before_the_gateway_gives_up(
    cache: FakePreviewCache, writer: CountingWriter, clock: Clock, sid: str
) -> None:
    cache.clock = lambda: 0.0  # the lease never expires
    assert cache.take_lease("acct-a", sid, NOTE, 2, holder="other-request", seconds=30)
    with pytest.raises(UpstreamUnavailable) as busy:
        previews.get_or_write(CALLER, sid, NOTE)
    assert busy.value.code == "preview_in_progress"
    assert sum(clock.sleeps) <= previews.waiting.budget_seconds
    assert max(clock.sleeps) == previews.waiting.max_poll_seconds
    assert writer.calls == []


def test_a_failed_holder_gives_the_lease_back_and_a_waiter_writes(
    cache: FakePreviewCache, writer: CountingWriter, clock: Clock, sid: str
) -> None:
    assert cache.take_lease("acct-a", sid, NOTE, 2, holder="other-request", seconds=30)
    clock.on_sleep = lambda poll: cache.release_lease("acct-a", sid, NOTE, 2, holder="other-request")
    answer = previews.get_or_write(CALLER, sid, NOTE)
    assert answer.from_cache is False and writer.calls == [(NOTE, 2, 1)]


def test_a_crashed_holders_expired_lease_is_taken_over_at_once(
    cache: FakePreviewCache, writer: CountingWriter, clock: Clock, sid: str
) -> None:
    cache.entries["acct-a", sid, NOTE, 2] = WriterLease(holder="crashed", expires_at=1)
    assert previews.get_or_write(CALLER, sid, NOTE).from_cache is False
    assert writer.calls == [(NOTE, 2, 1)] and clock.sleeps == []


def test_a_writer_failure_releases_the_lease_and_the_next_request_writes(
    cache: FakePreviewCache, writer: CountingWriter, clock: Clock, sid: str
) -> None:
    writer.fail = UpstreamUnavailable("model down", code="model_unavailable", retry_after=10)
    with pytest.raises(UpstreamUnavailable):
        previews.get_or_write(CALLER, sid, NOTE)
    assert cache.entries == {} and len(cache.released) == 1
    assert previews.get_or_write(CALLER, sid, NOTE).from_cache is False
    assert len(writer.calls) == 2


def test_a_preview_the_cache_refuses_is_still_answered_and_its_lease_released(
    cache: FakePreviewCache, writer: CountingWriter, clock: Clock, sid: str
) -> None:
    cache.refuse_puts = True
    answer = previews.get_or_write(CALLER, sid, NOTE)
    assert answer.from_cache is False and answer.markdown == "resolution-note at v2\n"
    assert cache.entries == {} and len(cache.released) == 1


def test_a_cached_preview_is_scanned_on_every_answer(cache: FakePreviewCache, writer: CountingWriter, sid: str) -> None:
    secret = "password: " + "Zq8" + "vN2xL5pR"
    cache.put_preview("acct-a", sid, cached(NOTE, 2, markdown=f"Reset it.\n{secret}\n"))
    answer = previews.get_or_write(CALLER, sid, NOTE)
    assert answer.from_cache and writer.calls == []
    assert answer.warnings and answer.warnings[0].line == 2
