"""Note writers: the resolution note and the escalation package, written offline or by Claude.

Import from here. `choose()` is the one place a writer is chosen. This package never imports `anthropic`
(nor `writers.claude`) at import time: the Claude writer is loaded only when a key makes it the choice.
"""

from __future__ import annotations

from functools import cache

from flowpilot import resets
from flowpilot.store import model_key
from flowpilot.writers.base import ESCALATION_HEADINGS, NoteWriter, WrittenDocument, has_escalation_sections
from flowpilot.writers.offline import OfflineWriter


@cache
def _claude_writer(api_key: str) -> NoteWriter:
    """One Claude writer per key and container, so warm invocations reuse the model's connection."""
    from flowpilot.writers.claude import ClaudeWriter  # lazy: `anthropic` costs ~1.2 s of cold start

    return ClaudeWriter(api_key=api_key)


def choose() -> NoteWriter:
    """Claude when there is an Anthropic key (`model_key`: the environment, else the configured secret),
    the offline writer without one."""
    api_key = model_key.anthropic_api_key()
    return _claude_writer(api_key) if api_key else OfflineWriter()


@resets.register
def reset_caches() -> None:
    """Forget the cached Claude writers (and with them their keys)."""
    _claude_writer.cache_clear()


__all__ = [
    "ESCALATION_HEADINGS",
    "NoteWriter",
    "OfflineWriter",
    "WrittenDocument",
    "choose",
    "has_escalation_sections",
    "reset_caches",
]
