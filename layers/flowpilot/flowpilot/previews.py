"""Resolution note and escalation package previews: cache lookup, one writer per state, secret scan, cache store.

Request budget: a cached preview costs two DynamoDB reads (the session, for its current state_version,
then the cache item keyed by it) and no model call; nothing on that path imports `anthropic`.
A miss takes the preview's lease (one conditional put), reads the evidence the writers have room for
(newest first, one or a few Query pages, plus a count of the older items when there are more), makes
exactly one writer call and puts the preview in the lease's place.

Single flight: concurrent misses of one (account, session, kind, state_version) make one model call. The
first takes the lease; the others poll the cache entry (backoff from 50 ms to 1 s) and answer the stored
preview with `from_cache: true`. A failed writer gives the lease back, so a waiter (while the writer's
whole time budget still fits in its wait) or the next request writes instead; a crashed one's lease
expires. Waiting ends before API Gateway's 30 s: then 503 `preview_in_progress` with Retry-After.
"""

from __future__ import annotations

import itertools
import math
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from flowpilot import writers
from flowpilot.clock import now_iso
from flowpilot.config import settings
from flowpilot.errors import UpstreamUnavailable
from flowpilot.identity import Caller
from flowpilot.models import CachedPreview, PreviewKind, ResolutionNotePreviewResponse, SecretWarning, Session
from flowpilot.observability import logger, metrics
from flowpilot.scanner import scan
from flowpilot.sessions import get_session
from flowpilot.store import preview_cache
from flowpilot.store import sessions as session_store
from flowpilot.store.preview_cache import CacheWriteFailed, WriterLease
from flowpilot.text import clean
from flowpilot.writers import NoteWriter
from flowpilot.writers.prompt import EvidenceWindow, ReadBudget, document_kinds

# Longer than the function's 29 s timeout, which bounds a holder's life: a live holder never loses its
# lease (the writer's own budget is 20 s), and a crashed holder's lease is gone within 30 s.
LEASE_SECONDS = 30


@dataclass(frozen=True)
class Waiting:
    """How a request waits for another one that is writing the same preview."""

    # Under API Gateway's 30 s (and the function's 29 s), over the writer's 20 s budget.
    budget_seconds: float = 25.0
    first_poll_seconds: float = 0.05
    max_poll_seconds: float = 1.0
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic


# The seams tests use: the real Claude writer with a mock HTTP transport, and an observable wait. The
# stores are reached through `preview_cache` and `session_store` only, so tests can swap in in-memory ones.
writer_factory: Callable[[], NoteWriter] = writers.choose
waiting = Waiting()


def get_or_write(caller: Caller, session_id: str, kind: PreviewKind) -> ResolutionNotePreviewResponse:
    """The preview of `kind` for the session's current state: cached, written by this request, or written
    by a concurrent one this request waited for."""
    session = get_session(caller, session_id)
    key = (caller.account_id, session.id, kind, session.state_version)
    entry = preview_cache.lookup(*key)
    if isinstance(entry, CachedPreview):
        metrics.add_metric(name="PreviewCacheHit", unit="Count", value=1)
        return _response(session, entry, from_cache=True)
    metrics.add_metric(name="PreviewCacheMiss", unit="Count", value=1)
    holder = secrets.token_hex(8)
    wait = waiting
    started = wait.clock()
    # A waiter takes over only while a writer's whole time budget still fits in its wait.
    write_until = started + max(wait.budget_seconds - settings().anthropic_timeout_seconds, 0.0)
    delay = wait.first_poll_seconds
    for poll in itertools.count():
        if entry is None:
            if poll and wait.clock() > write_until:
                raise UpstreamUnavailable(
                    "The preview's writer failed; ask again to write it.", code="preview_in_progress", retry_after=1
                )
            if preview_cache.take_lease(*key, holder=holder, seconds=LEASE_SECONDS):
                return _response(session, _write_as_holder(caller, session, kind, holder), from_cache=False)
        if wait.clock() - started + delay > wait.budget_seconds:
            raise UpstreamUnavailable(
                "Another request is still writing this preview; ask again shortly.",
                code="preview_in_progress",
                retry_after=_seconds_left(entry),
            )
        wait.sleep(delay)
        delay = min(delay * 2, wait.max_poll_seconds)
        entry = preview_cache.lookup(*key)
        if isinstance(entry, CachedPreview):
            metrics.add_metric(name="PreviewWaitedForWriter", unit="Count", value=1)
            return _response(session, entry, from_cache=True)
    raise AssertionError("unreachable: the loop returns or raises")


def _seconds_left(entry: WriterLease | None) -> int:
    # The holder answers within its lease; a sooner retry would most likely wait again.
    left = math.ceil(entry.expires_at - time.time()) if entry else 1
    return max(1, min(left, 5))


def _write_as_holder(caller: Caller, session: Session, kind: PreviewKind, holder: str) -> CachedPreview:
    """Write the preview under the lease and store it in the lease's place; a failure gives the lease back."""
    key = (caller.account_id, session.id, kind, session.state_version)
    try:
        written = _write(caller, session, kind)
    except BaseException:
        preview_cache.release_lease(*key, holder=holder)
        raise
    try:
        preview_cache.put_preview(caller.account_id, session.id, written)
    except CacheWriteFailed as failure:
        # The document is complete and correct; failing to cache it only costs a later model call.
        logger.warning("preview not cached", extra={"error_code": failure.code})
        preview_cache.release_lease(*key, holder=holder)
    return written


def _write(caller: Caller, session: Session, kind: PreviewKind) -> CachedPreview:
    # Only evidence of this state_version and the kinds this document shows; no more than a writer has room for.
    kinds = document_kinds(kind)
    budget = ReadBudget()
    newest = session_store.read_newest_evidence(
        caller.account_id, session.id, kinds=kinds, up_to_version=session.state_version, budget=budget
    )
    evidence = EvidenceWindow(newest.items, kinds=kinds, older_count=newest.older_count, lines=budget.lines)
    document = writer_factory().write(kind, session, evidence)
    usage = document.usage
    logger.info(
        "preview written",
        extra={
            "preview_kind": kind.value,
            "writer": document.writer,
            "evidence_items": len(evidence) + evidence.older_count,
            "evidence_items_read": len(evidence),
            "trimmed_evidence": document.trimmed_evidence,
            "usage": usage.model_dump() if usage else None,
        },
    )
    if usage:
        metrics.add_metric(name="ModelInputTokens", unit="Count", value=usage.input_tokens)
        metrics.add_metric(name="ModelOutputTokens", unit="Count", value=usage.output_tokens)
        metrics.add_metric(name="ModelCacheReadTokens", unit="Count", value=usage.cache_read_input_tokens)
    return CachedPreview(
        kind=kind,
        state_version=session.state_version,
        # Whatever the writer (or the model) produced, no control character reaches a preview.
        markdown=clean(document.markdown),
        writer=document.writer,
        usage=usage,
        generated_at=now_iso(),
    )


def _response(session: Session, preview: CachedPreview, *, from_cache: bool) -> ResolutionNotePreviewResponse:
    # Scanned on every answer (pure and fast): warnings always reflect the current scanner.
    warnings = [
        SecretWarning(kind=f.kind, line=f.line, column=f.column, excerpt=f.excerpt) for f in scan(preview.markdown)
    ]
    if warnings:
        metrics.add_metric(name="PreviewSecretWarnings", unit="Count", value=len(warnings))
    return ResolutionNotePreviewResponse(
        markdown=preview.markdown,
        target_ticket_ref=session.psa_ticket,
        state_version=preview.state_version,
        from_cache=from_cache,
        kind=preview.kind,
        writer=preview.writer,
        warnings=warnings,
        usage=preview.usage,
        generated_at=preview.generated_at,
    )
