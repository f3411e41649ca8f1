"""The Claude prompt builder and the evidence budget it shares with the offline writer."""

from __future__ import annotations

import re

from flowpilot.models import Evidence, EvidenceKind, PreviewKind, Session
from flowpilot.writers import ESCALATION_HEADINGS
from flowpilot.writers.prompt import (
    CHARS_PER_TOKEN,
    ITEM_TEXT_CAP_CHARS,
    NO_RESULT,
    SYSTEM_PROMPT_ESCALATION,
    SYSTEM_PROMPT_RESOLUTION,
    TRUNCATION_MARK,
    build_prompt,
    select_evidence,
)
from tests.unit.builders import evidence, make_session

ESCALATION = PreviewKind.escalation_package
RESOLUTION = PreviewKind.resolution_note
KIND_CYCLE = (EvidenceKind.tried, EvidenceKind.message, EvidenceKind.confirmed, EvidenceKind.tried)


def session(problem: str = "Outlook asks for the password every 10 minutes since Monday.") -> Session:
    return make_session(title="Outlook keeps prompting for credentials", problem=problem, state_version=1)


def many(count: int) -> list[Evidence]:
    return [
        evidence(n, KIND_CYCLE[n % 4], f"Step {n}: checked the WAM broker cache on LAPTOP-{n:05d}", f"outcome {n}")
        for n in range(count)
    ]


def test_small_sessions_are_sent_whole() -> None:
    items = many(10)
    prompt = build_prompt(ESCALATION, session(), items)
    assert prompt.trimmed_evidence == 0
    assert "omitted" not in prompt.user
    for item in items:
        assert item.text in prompt.user


def test_estimated_tokens_stay_flat_once_over_budget() -> None:
    small = build_prompt(ESCALATION, session(), many(10))
    large = build_prompt(ESCALATION, session(), many(5_000))
    larger = build_prompt(ESCALATION, session(), many(10_000))
    assert small.estimated_tokens < large.estimated_tokens <= 24_000
    assert larger.estimated_tokens <= 24_000
    # Flat: doubling the evidence changes the estimate by less than one item's worth.
    assert abs(larger.estimated_tokens - large.estimated_tokens) < 40
    assert large.estimated_tokens == -(-(len(large.system) + len(large.user)) // CHARS_PER_TOKEN)


def test_trimming_keeps_the_newest_and_states_what_was_omitted() -> None:
    items = many(5_000)
    prompt = build_prompt(ESCALATION, session(), items)
    assert 0 < prompt.trimmed_evidence < 5_000
    statement = re.search(r"\((\d+) older items omitted: ([^)]*)\)", prompt.user)
    assert statement is not None
    assert int(statement.group(1)) == prompt.trimmed_evidence
    counts = dict((kind, int(count)) for count, kind in (part.split(" ") for part in statement.group(2).split(", ")))
    assert sum(counts.values()) == prompt.trimmed_evidence
    assert set(counts) == {"confirmed", "tried", "message"}
    assert items[-1].text in prompt.user
    assert items[0].text not in prompt.user
    kept = prompt.user.count("- [")
    assert kept + prompt.trimmed_evidence == 5_000
    # Contiguous: every kept item is newer than every omitted one.
    assert items[prompt.trimmed_evidence].text in prompt.user
    assert items[prompt.trimmed_evidence - 1].text + "\n" not in prompt.user


def test_a_smaller_budget_is_respected() -> None:
    prompt = build_prompt(ESCALATION, session(), many(1_000), max_tokens_budget=3_000)
    assert prompt.estimated_tokens <= 3_000
    assert prompt.trimmed_evidence > 0


def test_each_item_is_capped() -> None:
    huge = "Get-WinEvent output: " + "event 4625 from 10.0.0.7; " * 500
    prompt = build_prompt(ESCALATION, session(), [evidence(1, EvidenceKind.tried, huge, "x" * 4_000)])
    (line,) = [line for line in prompt.user.splitlines() if line.startswith("- [tried]")]
    assert line.endswith(TRUNCATION_MARK)
    assert len(line) <= ITEM_TEXT_CAP_CHARS + len("- [tried] ")
    assert "x" * 900 not in prompt.user


def test_resolution_prompt_never_sees_hypotheses_or_messages() -> None:
    items = [
        evidence(1, EvidenceKind.confirmed, "Modern authentication is enabled for the tenant"),
        evidence(2, EvidenceKind.hypothesis, "Maybe the WAM broker token is stale"),
        evidence(3, EvidenceKind.message, "Rejected suggested fix: Rebuild profile — recreates the profile"),
        evidence(4, EvidenceKind.tried, "Cleared cached credentials in Credential Manager", "Prompts stopped"),
        evidence(5, EvidenceKind.next_step, "Confirm with the user tomorrow"),
    ]
    prompt = build_prompt(RESOLUTION, session(), items)
    assert prompt.system == SYSTEM_PROMPT_RESOLUTION
    assert "WAM broker token" not in prompt.user
    assert "Rejected suggested fix" not in prompt.user
    for kept in (items[0], items[3], items[4]):
        assert kept.text in prompt.user
    assert "Result: Prompts stopped" in prompt.user


def test_escalation_prompt_sees_everything_and_every_tried_result() -> None:
    items = [
        evidence(1, EvidenceKind.hypothesis, "Maybe the WAM broker token is stale"),
        evidence(2, EvidenceKind.message, "Rejected suggested fix: Rebuild profile — recreates the profile"),
        evidence(3, EvidenceKind.tried, "Ran fix: Re-register the AAD broker plugin"),
    ]
    prompt = build_prompt(ESCALATION, session(), items)
    assert prompt.system == SYSTEM_PROMPT_ESCALATION
    assert "- [hypothesis] Maybe the WAM broker token is stale" in prompt.user
    assert "- [message] Rejected suggested fix: Rebuild profile" in prompt.user
    assert f"- [tried] Ran fix: Re-register the AAD broker plugin\n  Result: {NO_RESULT}" in prompt.user


def test_system_prompts_state_the_rules() -> None:
    positions = [SYSTEM_PROMPT_ESCALATION.index(heading + "\n") for heading in ESCALATION_HEADINGS]
    assert positions == sorted(positions)
    for rule in ("Nothing invented", "every tried step with its result", "rejected", "credentials"):
        assert rule in SYSTEM_PROMPT_ESCALATION
    for rule in ("first line", "one-line", "Plain language", "hypotheses", "internal tools", "credentials"):
        assert rule in SYSTEM_PROMPT_RESOLUTION
    assert "Use only what the evidence says" in SYSTEM_PROMPT_RESOLUTION


def test_the_session_block_leads_and_does_not_change_with_the_evidence() -> None:
    first = build_prompt(ESCALATION, session(), many(3))
    later = build_prompt(ESCALATION, session(), many(30))
    assert first.session_block == later.session_block
    assert later.user.startswith(later.session_block)
    assert "Outlook asks for the password every 10 minutes" in first.session_block


def test_evidence_is_sent_oldest_first_whatever_the_input_order() -> None:
    items = many(20)
    assert build_prompt(ESCALATION, session(), items) == build_prompt(ESCALATION, session(), items[::-1])


def test_secrets_never_reach_the_prompt() -> None:
    secret = "Gr33n" + "Tea!" + "42"
    items = [evidence(1, EvidenceKind.tried, f"Mapped the drive with net use Z: \\\\fs01\\d /user:ACME\\bob {secret}")]
    prompt = build_prompt(ESCALATION, session(problem=f"Service account password={secret} stopped working"), items)
    assert secret not in prompt.user
    assert prompt.user.count("[redacted password]") == 2


def test_no_evidence_is_said_plainly() -> None:
    prompt = build_prompt(RESOLUTION, session(), [])
    assert "(no evidence recorded)" in prompt.evidence_block


def test_selection_counts_only_the_kinds_asked_for() -> None:
    selection = select_evidence(many(400), kinds=frozenset({EvidenceKind.tried}), budget_chars=2_000)
    assert {item.kind for item in selection.items} == {EvidenceKind.tried}
    assert [kind for kind, _ in selection.omitted] == [EvidenceKind.tried]
    assert selection.omitted_total + len(selection.items) == 200
