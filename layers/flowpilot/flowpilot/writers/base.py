"""What every note writer is: the `NoteWriter` protocol, its result and the escalation format.

The choice of writer for this process is `writers.choose()`. Nothing here imports `anthropic`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from flowpilot.models import Evidence, PreviewKind, PreviewUsage, Session

# The escalation package's sections, exactly and in this order.
ESCALATION_HEADINGS: tuple[str, ...] = (
    "## Problem",
    "## What we've confirmed",
    "## What we've tried",
    "## Current hypothesis",
    "## Suggested next steps",
)

# A markdown level-2 ATX heading: up to 3 spaces, "##", a space, the title, an optional closing "#" run.
_LEVEL_2_HEADING = re.compile(r"^ {0,3}##(?:[ \t]+(?P<title>.*?))??(?:[ \t]+#*)?[ \t]*$")


@dataclass(frozen=True)
class WrittenDocument:
    """A written preview. `writer` is "offline" or "claude:<model>"; `trimmed_evidence` counts the older
    evidence items left out (summarised by kind) to keep the document within budget."""

    markdown: str
    writer: str
    usage: PreviewUsage | None  # tokens the model call used (None: no model)
    trimmed_evidence: int


class NoteWriter(Protocol):
    def write(self, kind: PreviewKind, session: Session, evidence: Sequence[Evidence]) -> WrittenDocument:
        """The document of `kind` for `session`, built from `evidence` alone: every item of the session, or
        a `prompt.EvidenceWindow` (the newest items, and a count of older ones no writer has room for)."""
        ...


def level_2_headings(markdown: str) -> list[str]:
    """The `##` headings of a document, in order, as `## <title>` (lines in ``` code blocks are not)."""
    headings: list[str] = []
    in_code_block = False
    for line in markdown.splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            in_code_block = not in_code_block
        elif not in_code_block and (heading := _LEVEL_2_HEADING.match(line)):
            headings.append(f"## {heading.group('title') or ''}".rstrip())
    return headings


def has_escalation_sections(markdown: str) -> bool:
    """Whether the document starts with `## Problem` and its `##` headings are exactly the five, in order."""
    return (
        markdown.lstrip().startswith(ESCALATION_HEADINGS[0] + "\n")
        and tuple(level_2_headings(markdown)) == ESCALATION_HEADINGS
    )
