"""Resolution note and escalation package previews: cache lookup, writer call, secret scan, cache store.

Request budget: a cached preview costs two DynamoDB reads (the session, for its current state_version,
then the cache item keyed by it) and no model call; nothing on that path imports `anthropic`.
A miss adds one evidence query (paged) and one cache put, and makes exactly one writer call.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

from botocore.exceptions import ClientError

from flowpilot.clock import now_iso
from flowpilot.identity import Caller
from flowpilot.models import (
    PreviewKind,
    PreviewUsage,
    ResolutionNotePreviewResponse,
    SecretWarning,
    Session,
)
from flowpilot.observability import logger, metrics
from flowpilot.scanner import scan
from flowpilot.sessions import get_session
from flowpilot.store import model_key, preview_cache
from flowpilot.store import sessions as session_store
from flowpilot.store.preview_cache import CachedPreview
from flowpilot.writers import NoteWriter, writer_from_environment


@cache
def _claude_writer(api_key: str) -> NoteWriter:
    """One Claude writer per key and container, so warm invocations reuse the model's connection."""
    from flowpilot.writers.claude import ClaudeWriter

    return ClaudeWriter(api_key=api_key)


def default_writer() -> NoteWriter:
    """Claude with the key from the environment or the configured secret; the offline writer without one."""
    api_key = model_key.anthropic_api_key()
    return _claude_writer(api_key) if api_key else writer_from_environment()


# The one seam tests use to give the real Claude writer a mock HTTP transport.
writer_factory: Callable[[], NoteWriter] = default_writer


def reset_for_tests() -> None:
    _claude_writer.cache_clear()


def get_or_write(caller: Caller, session_id: str, kind: PreviewKind) -> ResolutionNotePreviewResponse:
    """The preview of `kind` for the session's current state: cached, or written, scanned and cached."""
    session = get_session(caller, session_id)
    cached = preview_cache.get_preview(caller.account_id, session.id, kind, session.state_version)
    if cached is not None:
        metrics.add_metric(name="PreviewCacheHit", unit="Count", value=1)
        return _response(session, cached, from_cache=True)
    metrics.add_metric(name="PreviewCacheMiss", unit="Count", value=1)
    written = _write(caller, session, kind)
    try:
        preview_cache.put_preview(caller.account_id, session.id, written)
    except ClientError as error:
        # The document is complete and correct; failing to cache it only costs a later model call.
        logger.warning("preview not cached", extra={"error_code": error.response.get("Error", {}).get("Code")})
    return _response(session, written, from_cache=False)


def _write(caller: Caller, session: Session, kind: PreviewKind) -> CachedPreview:
    # Evidence added after the session was read belongs to a later state_version, so it stays out.
    evidence = [
        e
        for e in session_store.iter_evidence(caller.account_id, session.id)
        if e.state_version <= session.state_version
    ]
    document = writer_factory().write(kind, session, evidence)
    usage = PreviewUsage.model_validate(document.usage, from_attributes=True) if document.usage else None
    logger.info(
        "preview written",
        extra={
            "preview_kind": kind.value,
            "writer": document.writer,
            "evidence_items": len(evidence),
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
        markdown=document.markdown,
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
