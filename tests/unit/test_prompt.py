"""The Claude prompt builder and the evidence budget it shares with the offline writer."""

from __future__ import annotations

import random
import re

import pytest

from flowpilot.models import Evidence, EvidenceKind, PreviewKind, Session
from flowpilot.scanner import scan
from flowpilot.writers import ESCALATION_HEADINGS, OfflineWriter
from flowpilot.writers.prompt import (
    CHARS_PER_TOKEN,
    ITEM_TEXT_CAP_CHARS,
    NO_RESULT,
    SYSTEM_PROMPT_ESCALATION,
    SYSTEM_PROMPT_RESOLUTION,
    TRUNCATION_MARK,
    EvidenceWindow,
    ReadBudget,
    build_prompt,
    document_kinds,
    evidence_line,
    select_evidence,
)
from tests.unit.builders import evidence, make_session
from tests.unit.test_scanner import AUDIT_CASES

ESCALATION = PreviewKind.escalation_package
RESOLUTION = PreviewKind.resolution_note
# What `flowpilot.text.clean` removes: C0 controls but newline and tab, DEL, C1 controls (ESC included).
CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
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
    statement = re.search(r"^\((\d+) older items omitted\)$", prompt.user, re.MULTILINE)
    assert statement is not None
    assert int(statement.group(1)) == prompt.trimmed_evidence
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
    assert selection.omitted > 0
    assert selection.omitted + len(selection.items) == 200


# --- reading only what a writer has room for: a window of the newest items and a count of the rest ---


def window_as_the_store_reads_it(items: list[Evidence], kind: PreviewKind) -> EvidenceWindow:
    """Newest first until a ReadBudget is full (the rest of a page is kept), then only a count."""
    kinds = document_kinds(kind)
    relevant = sorted((item for item in items if item.kind in kinds), key=lambda item: -item.state_version)
    budget = ReadBudget()
    read: list[Evidence] = []
    while len(read) < len(relevant):
        page = relevant[len(read) : len(read) + budget.wanted()]
        full = False
        for item in page:
            read.append(item)
            full = full or not budget.take(item)
        if full:
            break
    return EvidenceWindow(tuple(read), kinds=kinds, older_count=len(relevant) - len(read), lines=budget.lines)


def varied(count: int, seed: int) -> list[Evidence]:
    """Items of every kind and very different sizes (a few words to past the cap), some with results."""
    rng = random.Random(seed)
    kinds = list(EvidenceKind)
    words = ["VPN", "tunnel", "dropped", "Event 4625", "LAPTOP-07", "reinstalled", "no change", "0x80070005"]
    out = []
    for n in range(count):
        text = " ".join(rng.choice(words) for _ in range(rng.choice([1, 3, 12, 60, 400])))
        result = " ".join(rng.choice(words) for _ in range(rng.randint(1, 30))) if rng.random() < 0.5 else None
        out.append(evidence(n, rng.choice(kinds), f"#{n} {text}", result))
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("count", [0, 7, 900, 5_000])
def test_a_window_gives_the_same_documents_as_every_item(count: int, seed: int) -> None:
    items = varied(count, seed)
    for kind in PreviewKind:
        window = window_as_the_store_reads_it(items, kind)
        assert window.older_count == 0 if count < 10 else window.older_count > 0
        assert build_prompt(kind, session(), window) == build_prompt(kind, session(), items)
        assert OfflineWriter().write(kind, session(), window) == OfflineWriter().write(kind, session(), items)


def test_a_window_of_a_large_session_reads_a_fraction_and_counts_the_rest() -> None:
    items = many(5_000)
    window = window_as_the_store_reads_it(items, ESCALATION)
    prompt = build_prompt(ESCALATION, session(), window)
    assert window.older_count > 0
    assert len(window) < 2_000
    assert len(window) + window.older_count == 5_000
    assert f"({prompt.trimmed_evidence} older items omitted)" in prompt.user
    assert prompt.trimmed_evidence >= window.older_count


def test_a_window_counted_for_other_kinds_is_refused() -> None:
    window = EvidenceWindow(tuple(many(4)), kinds=document_kinds(ESCALATION), older_count=10)
    with pytest.raises(ValueError, match="other kinds"):
        build_prompt(RESOLUTION, session(), window)


def test_read_sizes_follow_what_was_read_and_stay_bounded() -> None:
    budget = ReadBudget()
    assert budget.wanted() == ReadBudget.FIRST_READ
    small = [evidence(n, EvidenceKind.confirmed, "ok") for n in range(10)]
    assert all(budget.take(item) for item in small)
    assert budget.wanted() == ReadBudget.MAX_READ  # tiny items: as many as could ever fit
    big = ReadBudget()
    assert big.take(evidence(1, EvidenceKind.tried, "x" * 5_000, "y" * 5_000))
    # ~2,000 characters each once capped: the rest of a ~96,000-character room takes about 48 more (+ margin).
    assert 48 <= big.wanted() <= 48 * 1.25 + 9


# --- text hygiene: no control character reaches the model ---

DIRTY_TEXT = "Ran\x00 the \x1b[31mrepair\x1b[0m tool\x07 on PC\x7f-07"
DIRTY_RESULT = "Exit code \x1b[1m0\x1b[22m\x00, service\x9b2J restarted"


def test_control_characters_never_reach_the_prompt() -> None:
    problem = "Line one\x00 of the \x1b[32mproblem\x1b[0m\nLine two\x07"
    items = [evidence(1, EvidenceKind.tried, DIRTY_TEXT, DIRTY_RESULT)]
    for kind in PreviewKind:
        prompt = build_prompt(kind, session(problem=problem), items)
        for text in (prompt.system, prompt.session_block, prompt.evidence_block):
            assert not CONTROL_CHARACTERS.search(text), repr(text)
        assert "Ran the repair tool on PC-07" in prompt.evidence_block
        assert "Result: Exit code 0, service restarted" in prompt.evidence_block
        assert "Line one of the problem\nLine two\n" in prompt.session_block


def test_a_secret_split_by_a_control_character_is_still_redacted() -> None:
    secret = "Gr33n" + "Tea!" + "42"
    items = [evidence(1, EvidenceKind.tried, f"Reset it: pass\x00word={secret}")]
    prompt = build_prompt(ESCALATION, session(), items)
    assert secret not in prompt.user
    assert "[redacted password]" in prompt.user


def test_a_result_of_control_characters_only_is_no_result() -> None:
    prompt = build_prompt(ESCALATION, session(), [evidence(1, EvidenceKind.tried, "Rebooted", "\x00\x1b[0m\x07")])
    assert f"- [tried] Rebooted\n  Result: {NO_RESULT}" in prompt.user


@pytest.mark.parametrize(
    ("text", "secret"),
    [(text, secret) for text, _, secret, _ in AUDIT_CASES],
    ids=[str(i) for i in range(len(AUDIT_CASES))],
)
def test_audit_forms_never_reach_the_prompt_and_what_is_shown_scans_clean(text: str, secret: str) -> None:
    """Evidence is shown on one line: it is redacted as written and again as shown ("password:" / "X" joined)."""
    items = [
        evidence(1, EvidenceKind.tried, f"Checked the config\n{text}", text),
        evidence(2, EvidenceKind.confirmed, text),
    ]
    for kind in PreviewKind:
        prompt = build_prompt(kind, session(problem=f"Customer pasted:\n{text}"), items)
        assert secret not in prompt.user
        assert "[redacted " in prompt.evidence_block
        assert scan(prompt.evidence_block) == []
    line = evidence_line(items[1])
    assert secret not in line.text and scan(line.text) == []


def test_joining_a_label_and_its_value_onto_one_line_does_not_show_the_value() -> None:
    secret = "Win" + "ter2024x"
    # As written, the value is not alone on the line after the label (not read as its value); joined onto one
    # line it reads "password: X", and the preview shows the joined line.
    item = evidence(1, EvidenceKind.tried, f"Set the kiosk password:\n\n{secret} and rebooted")
    shown = evidence_line(item).text
    assert secret not in shown
    assert shown == "Set the kiosk password: [redacted password] and rebooted"
