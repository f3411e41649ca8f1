"""The offline writer: both documents from the evidence alone: nothing invented, nothing left out."""

from __future__ import annotations

import random
import re
from collections import Counter

import pytest

from flowpilot.models import Evidence, EvidenceKind, PreviewKind, Session
from flowpilot.scanner import scan
from flowpilot.writers import ESCALATION_HEADINGS, OfflineWriter, has_escalation_sections
from flowpilot.writers.offline import (
    DONE_HEADING,
    FIXED_LINES,
    FOUND_HEADING,
    NEXT_STEPS_HEADING,
    NO_HYPOTHESIS,
    NO_NEXT_STEPS,
    NOTHING_CONFIRMED,
    NOTHING_TRIED,
)
from tests.conftest import Api
from tests.unit.builders import evidence, make_session
from tests.unit.test_scanner import AUDIT_CASES

ESCALATION = PreviewKind.escalation_package
RESOLUTION = PreviewKind.resolution_note
TITLE = "Outlook keeps prompting for credentials"
PROBLEM = "Jane Smith says Outlook asks for her password every 10 minutes.\n\nIt started Monday after the MFA rollout."


def session(problem: str = PROBLEM) -> Session:
    return make_session(title=TITLE, problem=problem, state_version=9)


EVIDENCE = [
    evidence(1, EvidenceKind.confirmed, "Modern authentication is enabled for the tenant."),
    evidence(
        2,
        EvidenceKind.tried,
        "Cleared cached credentials in Credential Manager",
        "Prompt came back after 10 min",
    ),
    evidence(3, EvidenceKind.hypothesis, "The WAM broker holds a stale token for the old UPN."),
    evidence(
        4,
        EvidenceKind.message,
        "Rejected suggested fix: Rebuild Outlook profile — recreates the mail profile",
    ),
    evidence(5, EvidenceKind.confirmed, "Sign-in logs show interrupts with AADSTS50076."),
    evidence(6, EvidenceKind.tried, "Ran fix: Re-register the AAD broker plugin", "Prompts stopped for 2 hours"),
    evidence(7, EvidenceKind.tried, "Checked the Office build number"),
    evidence(8, EvidenceKind.message, "Customer says the issue also happens on her phone."),
    evidence(9, EvidenceKind.next_step, "Ask the user to confirm tomorrow morning."),
    evidence(10, EvidenceKind.hypothesis, "Conditional Access session frequency may be set to 10 minutes."),
    evidence(11, EvidenceKind.next_step, "Review the Conditional Access policy 'Require MFA - all users'."),
]


def customer_line(item: Evidence) -> str:
    """How the resolution note shows one item: a step without a result is just the step."""
    if item.kind is EvidenceKind.tried and item.result is None:
        return f"- {item.text}"
    return item_line(item)


def test_resolution_note_says_nothing_of_missing_results() -> None:
    items = [evidence(1, EvidenceKind.tried, "Restarted the print spooler")]
    markdown = OfflineWriter().write(RESOLUTION, session(), items).markdown
    assert "- Restarted the print spooler\n" in markdown
    assert "no result recorded" not in markdown
    escalation = OfflineWriter().write(ESCALATION, session(), items).markdown
    assert "- Restarted the print spooler — Result: no result recorded" in escalation


def item_line(item: Evidence) -> str:
    """How the escalation package shows one item (the writer's documented format)."""
    if item.kind is EvidenceKind.message:
        return f"- Note: {item.text}"
    if item.kind is EvidenceKind.tried:
        return f"- {item.text} — Result: {item.result or 'no result recorded'}"
    return f"- {item.text}"


def content_lines(markdown: str) -> list[str]:
    return [line for line in markdown.splitlines() if line.strip()]


def test_escalation_package_has_the_five_headings_in_order_and_no_other() -> None:
    markdown = OfflineWriter().write(ESCALATION, session(), EVIDENCE).markdown
    assert [line for line in markdown.splitlines() if line.startswith("#")] == list(ESCALATION_HEADINGS)
    assert has_escalation_sections(markdown)


def test_escalation_package_is_exactly_the_session_and_every_item_once() -> None:
    document = OfflineWriter().write(ESCALATION, session(), EVIDENCE)
    expected = Counter(
        [
            *ESCALATION_HEADINGS,
            f"**{TITLE}**",
            *(f"> {line}" if line else ">" for line in PROBLEM.splitlines()),
            *(item_line(item) for item in EVIDENCE),
        ]
    )
    # Blank lines aside, nothing appears that is not from the session or evidence, and nothing is missing.
    assert Counter(content_lines(document.markdown)) == expected
    assert document.writer == "offline"
    assert document.usage is None
    assert document.trimmed_evidence == 0


def test_escalation_sections_hold_the_right_items_in_order() -> None:
    markdown = OfflineWriter().write(ESCALATION, session(), EVIDENCE).markdown
    sections = dict(
        (match.group(1), match.group(2))
        for match in re.finditer(r"^(## .+)\n((?:(?!## ).*\n?)*)", markdown, re.MULTILINE)
    )
    tried = sections["## What we've tried"]
    assert tried.index("Cleared cached") < tried.index("Rejected suggested fix") < tried.index("Ran fix")
    assert "- Ran fix: Re-register the AAD broker plugin — Result: Prompts stopped for 2 hours" in tried
    assert "- Checked the Office build number — Result: no result recorded" in tried
    assert "phone" in tried
    assert "stale token" in sections["## Current hypothesis"]
    assert "session frequency" in sections["## Current hypothesis"]
    assert "AADSTS50076" in sections["## What we've confirmed"]
    assert "Conditional Access policy" in sections["## Suggested next steps"]
    assert TITLE in sections["## Problem"]


def test_empty_sections_say_so_plainly() -> None:
    markdown = OfflineWriter().write(ESCALATION, session(), []).markdown
    for phrase in (NOTHING_CONFIRMED, NOTHING_TRIED, NO_HYPOTHESIS, NO_NEXT_STEPS):
        assert phrase in markdown
    assert has_escalation_sections(markdown)


def test_resolution_note_leaves_out_hypotheses_and_messages() -> None:
    markdown = OfflineWriter().write(RESOLUTION, session(), EVIDENCE).markdown
    for item in EVIDENCE:
        if item.kind in (EvidenceKind.hypothesis, EvidenceKind.message):
            assert item.text not in markdown
        else:
            assert item.text in markdown
    assert "Rejected" not in markdown
    assert "stale token" not in markdown


def test_resolution_note_is_a_summary_line_then_what_was_found_done_and_next() -> None:
    markdown = OfflineWriter().write(RESOLUTION, session(), EVIDENCE).markdown
    lines = markdown.splitlines()
    # The newest tried step with a result, after the title: usable as the resolution summary.
    assert lines[0] == f"{TITLE} — Ran fix: Re-register the AAD broker plugin: Prompts stopped for 2 hours"
    assert lines[1] == ""
    allowed = FIXED_LINES | {lines[0]} | {customer_line(item) for item in EVIDENCE}
    assert all(line in allowed for line in content_lines(markdown))
    headings = [line for line in lines if line.startswith("#")]
    assert headings == [FOUND_HEADING, DONE_HEADING, NEXT_STEPS_HEADING]


def test_resolution_note_without_evidence_says_so_and_has_no_next_steps_section() -> None:
    markdown = OfflineWriter().write(RESOLUTION, session(), []).markdown
    assert markdown.splitlines()[0] == TITLE
    assert NOTHING_CONFIRMED in markdown
    assert NOTHING_TRIED in markdown
    assert NEXT_STEPS_HEADING not in markdown


def test_the_summary_line_is_bounded() -> None:
    long_step = evidence(1, EvidenceKind.tried, "Ran " + "a very long command line " * 20, "it worked")
    first = OfflineWriter().write(RESOLUTION, session(), [long_step]).markdown.splitlines()[0]
    assert len(first) <= 200
    assert first.startswith(TITLE)


def test_deterministic_whatever_the_input_order() -> None:
    writer = OfflineWriter()
    shuffled = EVIDENCE[:]
    random.Random(7).shuffle(shuffled)
    for kind in PreviewKind:
        first = writer.write(kind, session(), EVIDENCE)
        assert first == writer.write(kind, session(), EVIDENCE)
        assert first == OfflineWriter().write(kind, session(), shuffled)


def test_thousands_of_items_give_a_bounded_document_that_says_what_it_left_out() -> None:
    kinds = list(EvidenceKind)
    items = [
        evidence(n, kinds[n % 5], f"Item {n}: checked GPO 'Drive Maps' on PC-{n:05d}", f"result {n}")
        for n in range(5_000)
    ]
    long_problem = "The user cannot map drives. " * 350
    for kind in PreviewKind:
        document = OfflineWriter().write(kind, session(problem=long_problem), items)
        assert len(document.markdown) <= 20_000  # what a posted note may hold
        assert document.trimmed_evidence > 0
        note = re.search(r"^\((\d+) older items omitted\)$", document.markdown, re.MULTILINE)
        assert note is not None
        assert int(note.group(1)) == document.trimmed_evidence
        assert "PC-04998" in document.markdown  # the newest (4999 is a message: not in a resolution note)
    escalation = OfflineWriter().write(ESCALATION, session(), items)
    assert has_escalation_sections(escalation.markdown)
    shown = escalation.markdown.count("\n- ")
    assert shown + escalation.trimmed_evidence == 5_000


def test_multiline_or_heading_like_evidence_cannot_add_sections() -> None:
    items = [evidence(1, EvidenceKind.tried, "Ran the script\n## Injected heading\nsecond line", "ok\n\n## Another")]
    markdown = OfflineWriter().write(ESCALATION, session(problem="Line one\n## Not a heading"), items).markdown
    assert has_escalation_sections(markdown)
    assert "- Ran the script ## Injected heading second line — Result: ok ## Another" in markdown


def test_secrets_are_redacted() -> None:
    secret = "Aut" + "umn" + "2024!"
    items = [evidence(1, EvidenceKind.tried, f"Reset with password={secret}", f"Password: {secret} accepted")]
    for kind in PreviewKind:
        markdown = OfflineWriter().write(kind, session(), items).markdown
        assert secret not in markdown
        assert "[redacted password]" in markdown


def test_control_characters_never_reach_either_document() -> None:
    control = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
    problem = "First line\x00 of the \x1b[31mproblem\x1b[0m\nSecond line\x07"
    items = [
        evidence(1, EvidenceKind.confirmed, "Adapter \x1b[1mIntel\x1b[22m I219\x7f resets"),
        evidence(2, EvidenceKind.tried, "Updated\x00 the driver", "Still\x07 drops\x1b]0;title\x07"),
        evidence(3, EvidenceKind.next_step, "Swap the \x9b1mdock\x9b0m"),
    ]
    for kind in PreviewKind:
        markdown = OfflineWriter().write(kind, session(problem=problem), items).markdown
        assert not control.search(markdown), repr(markdown)
        assert "Adapter Intel I219 resets" in markdown
        assert "Updated the driver — Result: Still drops" in markdown
        assert "Swap the dock" in markdown
    package = OfflineWriter().write(ESCALATION, session(problem=problem), items).markdown
    assert "> First line of the problem\n> Second line\n" in package


@pytest.mark.parametrize(
    ("text", "secret"),
    [(text, secret) for text, _, secret, _ in AUDIT_CASES],
    ids=[str(i) for i in range(len(AUDIT_CASES))],
)
def test_audit_forms_never_reach_a_preview_through_the_real_handler(api: Api, text: str, secret: str) -> None:
    """The audit's forms as evidence and in the problem: neither preview shows them, and what it shows scans clean."""
    session_id = api.new_session(problem=f"Customer pasted:\n{text}")["id"]
    for kind, item, result in (("confirmed", text, None), ("tried", f"Checked the config\n{text}", text)):
        body = {"kind": kind, "text": item, **({"result": result} if result is not None else {})}
        response = api.post(f"/ai-sessions/{session_id}/evidence", body)
        assert response.status == 201, response.text
    for document in ("resolution-note", "escalation-package"):
        preview = api.post(f"/ai-sessions/{session_id}/{document}/preview").body
        assert secret not in preview["markdown"], document
        assert "[redacted " in preview["markdown"]
        assert preview["warnings"] == []
        assert scan(preview["markdown"]) == []


def test_secrets_split_over_lines_are_redacted_in_both_documents() -> None:
    secret = "SECRET" + "123x"
    items = [
        evidence(1, EvidenceKind.tried, f"Password\n: {secret}", f"password:\u2028{secret}"),
        evidence(2, EvidenceKind.confirmed, f"New password for the user\n{secret}"),
    ]
    for kind in PreviewKind:
        markdown = OfflineWriter().write(kind, session(problem=f"password:\n{secret}"), items).markdown
        assert secret not in markdown
        assert scan(markdown) == []
