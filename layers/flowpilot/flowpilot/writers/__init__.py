"""Note writers: the resolution note and the escalation package, written offline or by Claude.

Import from here. This package never imports `anthropic` (nor `writers.claude`) at import time:
`writer_from_environment()` loads the Claude writer only when `ANTHROPIC_API_KEY` is set.
"""

from flowpilot.writers.base import (
    ESCALATION_HEADINGS,
    NoteWriter,
    Usage,
    WrittenDocument,
    has_escalation_sections,
    writer_from_environment,
)
from flowpilot.writers.offline import OfflineWriter

__all__ = [
    "ESCALATION_HEADINGS",
    "NoteWriter",
    "OfflineWriter",
    "Usage",
    "WrittenDocument",
    "has_escalation_sections",
    "writer_from_environment",
]
