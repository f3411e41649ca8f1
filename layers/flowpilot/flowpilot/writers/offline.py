"""The offline writer: deterministic previews built from the session and its evidence alone, no network.

Nothing is invented: every line is the session's title or problem, an evidence item (text, and result
for tried steps), or one of the fixed phrases below. Nothing is left out, within the shared budget of
`prompt.select_evidence` (older items beyond it are counted on one "(N older items omitted)" line).
Control characters are removed, secrets redacted, and each item is shown on one line (see
`prompt.one_line`).

Escalation package: the five `ESCALATION_HEADINGS` in order, each evidence item exactly once:
- Problem: the title in bold, the problem statement as a quote, then the omission line if any;
- What we've confirmed: `confirmed` items; What we've tried: `tried` items with "Result: …" (or
  "Result: no result recorded") and, interleaved in the order they happened, `message` items as
  "Note: …" lines: messages are mostly about the steps (a rejected fix is recorded as the message
  "Rejected suggested fix: …"), so they read best next to them;
- Current hypothesis: `hypothesis` items; Suggested next steps: `next_step` items.

Resolution note (customer-visible): only `confirmed`, `tried` and `next_step` items; hypotheses and
messages are internal and never appear. The first line is the one-line summary: the title, then the
newest tried step that has a result (else the newest tried step) with its result, at most 200
characters. Then "What we found", "What we did", and "Next steps" only when there are some (a customer
needs no "nothing to do" section); the omission line, if any, comes last. Empty sections say so
plainly ("Nothing confirmed yet.").
"""

from __future__ import annotations

from collections.abc import Sequence

from flowpilot.models import Evidence, EvidenceKind, PreviewKind, Session
from flowpilot.writers.base import ESCALATION_HEADINGS, WrittenDocument
from flowpilot.writers.prompt import (
    CHARS_PER_TOKEN,
    ESCALATION_KINDS,
    NO_RESULT,
    RESOLUTION_KINDS,
    EvidenceLine,
    clean_problem_lines,
    clean_title,
    select_evidence,
)

# 4,500 tokens ≈ 18,000 characters: a posted note may hold at most 20,000.
OFFLINE_BUDGET_TOKENS = 4_500
SUMMARY_MAX_CHARS = 200

NOTHING_CONFIRMED = "Nothing confirmed yet."
NOTHING_TRIED = "Nothing tried yet."
NO_HYPOTHESIS = "No hypothesis recorded yet."
NO_NEXT_STEPS = "No next steps recorded yet."
RESULT_LABEL = "Result:"
NOTE_LABEL = "Note:"
FOUND_HEADING = "## What we found"
DONE_HEADING = "## What we did"
NEXT_STEPS_HEADING = "## Next steps"
# Every line the writer adds on its own; everything else comes from the session or its evidence.
FIXED_LINES: frozenset[str] = frozenset(
    {
        *ESCALATION_HEADINGS,
        NOTHING_CONFIRMED,
        NOTHING_TRIED,
        NO_HYPOTHESIS,
        NO_NEXT_STEPS,
        FOUND_HEADING,
        DONE_HEADING,
        NEXT_STEPS_HEADING,
    }
)
# Upper bound of the fixed text around the evidence (headings, empty-section phrases, markup).
_FIXED_OVERHEAD_CHARS = sum(len(line) + 2 for line in FIXED_LINES) + 16


def _bullet(item: EvidenceLine, *, customer_visible: bool = False) -> str:
    if item.kind is EvidenceKind.message:
        return f"- {NOTE_LABEL} {item.text}"
    if customer_visible and item.result is None:
        # The internal package says "no result recorded"; a customer reads only what was done.
        return f"- {item.text}"
    if item.kind is EvidenceKind.tried or item.result is not None:
        return f"- {item.text} — {RESULT_LABEL} {item.result if item.result is not None else NO_RESULT}"
    return f"- {item.text}"


def _section(heading: str, items: Sequence[EvidenceLine], empty: str, *, customer_visible: bool = False) -> list[str]:
    return [heading, *([_bullet(item, customer_visible=customer_visible) for item in items] or [empty]), ""]


def _summary(title: str, tried: Sequence[EvidenceLine]) -> str:
    summary = title
    # A step with a result says more about how it ended than a later step without one.
    candidates = [item for item in tried if item.result is not None] or list(tried)
    if candidates:
        newest = candidates[-1]
        summary += f" — {newest.text}" + (f": {newest.result}" if newest.result is not None else "")
    return summary if len(summary) <= SUMMARY_MAX_CHARS else summary[: SUMMARY_MAX_CHARS - 1].rstrip() + "…"


class OfflineWriter:
    """Writes previews from the evidence alone (see the module docstring for the layout)."""

    def __init__(self, *, max_tokens_budget: int = OFFLINE_BUDGET_TOKENS) -> None:
        self._budget_chars = max_tokens_budget * CHARS_PER_TOKEN

    def write(self, kind: PreviewKind, session: Session, evidence: Sequence[Evidence]) -> WrittenDocument:
        title, problem = clean_title(session), clean_problem_lines(session)
        if kind is PreviewKind.escalation_package:
            markdown, trimmed = self._escalation_package(title, problem, evidence)
        else:
            markdown, trimmed = self._resolution_note(title, evidence)
        return WrittenDocument(markdown=markdown, writer="offline", usage=None, trimmed_evidence=trimmed)

    def _escalation_package(self, title: str, problem: Sequence[str], evidence: Sequence[Evidence]) -> tuple[str, int]:
        quoted = [f"> {line}" if line else ">" for line in problem]
        fixed_chars = len(title) + sum(len(line) + 1 for line in quoted) + _FIXED_OVERHEAD_CHARS
        selection = select_evidence(evidence, kinds=ESCALATION_KINDS, budget_chars=self._budget_chars - fixed_chars)
        note = selection.omission_note()
        lines = [ESCALATION_HEADINGS[0], f"**{title}**", "", *quoted, "", *([note, ""] if note else [])]
        lines += _section(ESCALATION_HEADINGS[1], selection.of_kind(EvidenceKind.confirmed), NOTHING_CONFIRMED)
        lines += _section(
            ESCALATION_HEADINGS[2], selection.of_kind(EvidenceKind.tried, EvidenceKind.message), NOTHING_TRIED
        )
        lines += _section(ESCALATION_HEADINGS[3], selection.of_kind(EvidenceKind.hypothesis), NO_HYPOTHESIS)
        lines += _section(ESCALATION_HEADINGS[4], selection.of_kind(EvidenceKind.next_step), NO_NEXT_STEPS)
        return "\n".join(lines).rstrip() + "\n", selection.omitted

    def _resolution_note(self, title: str, evidence: Sequence[Evidence]) -> tuple[str, int]:
        fixed_chars = SUMMARY_MAX_CHARS + _FIXED_OVERHEAD_CHARS
        selection = select_evidence(evidence, kinds=RESOLUTION_KINDS, budget_chars=self._budget_chars - fixed_chars)
        tried = selection.of_kind(EvidenceKind.tried)
        next_steps = selection.of_kind(EvidenceKind.next_step)
        lines = [_summary(title, tried), ""]
        lines += _section(
            FOUND_HEADING, selection.of_kind(EvidenceKind.confirmed), NOTHING_CONFIRMED, customer_visible=True
        )
        lines += _section(DONE_HEADING, tried, NOTHING_TRIED, customer_visible=True)
        if next_steps:
            lines += _section(NEXT_STEPS_HEADING, next_steps, NO_NEXT_STEPS, customer_visible=True)
        if note := selection.omission_note():
            lines.append(note)
        return "\n".join(lines).rstrip() + "\n", selection.omitted
