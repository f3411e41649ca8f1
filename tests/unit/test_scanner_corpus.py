"""The secret scanner over the corpus in tests/scanner_corpus: recall and false-positive targets, positions, masking.

Targets: at least 95% of credential cases caught and at most 2% of benign cases flagged, over the whole corpus
and over its held-out part (cases the scanner was never tuned against), so the figures cannot regress.
"""

from __future__ import annotations

import pytest

from flowpilot.scanner import redact, scan
from tests.scanner_corpus import INVISIBLE_NAMES, adversarial_inputs, figures, load, missed_secrets, position

MIN_RECALL = 0.95
MAX_FALSE_POSITIVE_RATE = 0.02
CREDENTIALS = load("credentials")
BENIGN = load("benign")


def test_the_corpus_is_big_enough_and_keeps_a_held_out_third() -> None:
    for cases in (CREDENTIALS, BENIGN):
        assert len(cases) >= 60
        held_out = sum(case.held_out for case in cases) / len(cases)
        assert 0.25 <= held_out <= 0.5, held_out
    assert all(case.secrets for case in CREDENTIALS)
    assert not any(case.secrets for case in BENIGN)


def test_the_corpus_has_the_hard_forms_it_claims() -> None:
    texts = [case.text for case in CREDENTIALS]
    assert sum("\n" in text and "|" in text for text in texts) >= 5  # tables
    assert sum(any(char in text for char in INVISIBLE_NAMES.values()) for text in texts) >= 6  # split tokens
    assert sum(text.lower().startswith("net user") for text in texts) >= 3


@pytest.mark.parametrize("part", ["", "held_out_"], ids=["whole corpus", "held-out part"])
def test_recall_and_false_positive_targets(part: str) -> None:
    result = figures(scan)
    assert result[f"{part}recall"] >= MIN_RECALL, result
    assert result[f"{part}false_positive_rate"] <= MAX_FALSE_POSITIVE_RATE, result


def test_every_finding_in_a_credential_case_starts_at_a_marked_secret() -> None:
    """No finding lands on the wrong line or column, and every miss is listed (recall is checked above)."""
    caught = 0
    for case in CREDENTIALS:
        findings = scan(case.text)
        marked = {position(case.text, start) for start, _ in case.secrets}
        assert {(f.line, f.column) for f in findings} <= marked, (case.source_line, findings)
        caught += not missed_secrets(case, findings)
    assert caught >= MIN_RECALL * len(CREDENTIALS)


def test_the_credential_corpus_as_one_document_points_every_finding_at_its_line_and_column() -> None:
    """Cases joined into one note: line numbers add up across cases, invisible characters do not shift columns."""
    text = "\n".join(case.text for case in CREDENTIALS)
    expected = set()
    offset = 0
    for case in CREDENTIALS:
        if not missed_secrets(case, scan(case.text)):
            expected |= {position(text, offset + start) for start, _ in case.secrets}
        offset += len(case.text) + 1
    reported = {(f.line, f.column) for f in scan(text)}
    assert expected <= reported
    assert len(reported - expected) <= len(CREDENTIALS) - MIN_RECALL * len(CREDENTIALS)


def test_benign_corpus_as_one_document_stays_quiet() -> None:
    text = "\n".join(case.text for case in BENIGN)
    assert len(scan(text)) <= MAX_FALSE_POSITIVE_RATE * len(BENIGN)


def test_excerpts_never_show_a_secret_and_redact_removes_every_caught_one() -> None:
    for case in CREDENTIALS:
        findings = scan(case.text)
        redacted = redact(case.text)
        for start, end in case.secrets:
            secret = case.text[start:end]
            visible = "".join(char for char in secret if char not in INVISIBLE_NAMES.values())
            for finding in findings:
                assert len(finding.excerpt) <= 5 and finding.excerpt.endswith("…"), finding
                assert visible not in finding.excerpt
            if findings and not missed_secrets(case, findings):
                assert secret not in redacted and visible not in redacted, case.source_line
                assert "[redacted " in redacted


@pytest.mark.parametrize("name", sorted(adversarial_inputs()))
def test_adversarial_20k_inputs_have_no_findings(name: str) -> None:
    text = adversarial_inputs()[name]
    assert len(text) == 20_000
    assert scan(text) == []


@pytest.mark.parametrize("name", sorted(adversarial_inputs()))
def test_a_secret_after_20k_of_adversarial_text_is_still_found_where_it_is(name: str) -> None:
    tail = "\nthe password is Win" + "ter2024!"
    text = adversarial_inputs()[name][: 20_000 - len(tail)] + tail
    last_line = text.count("\n") + 1
    assert [(f.kind, f.line, f.column) for f in scan(text)] == [("password", last_line, 17)]


def test_a_20k_note_made_only_of_credentials_reports_each_one() -> None:
    unit = "the password is Win" + "ter2024! "
    text = (unit * (20_000 // len(unit)))[:20_000]
    findings = scan(text)
    assert len(findings) == text.count("Win" + "ter2024!")
    assert [f.column for f in findings] == [i * len(unit) + 17 for i in range(len(findings))]
