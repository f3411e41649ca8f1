"""How a note's text on the ticket is compared with the approved text, and what the ledger records of it."""

from __future__ import annotations

import pytest

from flowpilot.psa.base import same_text, with_marker, without_marker

MARKER = "ref:fp-wb_abc123"


@pytest.mark.parametrize(
    ("shown", "approved"),
    [
        ("Done.\r\nRestarted.", "Done.\nRestarted."),  # line endings
        ("Done.   \nRestarted.\t", "Done.\nRestarted."),  # whitespace at the end of a line
        ("\n\nDone.\n\n\n", "Done."),  # blank lines around the text
        ("Line one  \nLine two", "Line one\nLine two"),
    ],
)
def test_what_psas_normalise_is_the_same_text(shown: str, approved: str) -> None:
    assert same_text(shown, approved) and same_text(approved, shown)


@pytest.mark.parametrize(
    ("shown", "approved"),
    [
        ("    indented code", "indented code"),  # a Markdown code block is not a paragraph
        ("  Text A", "Text A"),
        ("Done.\n\nRestarted.", "Done.\nRestarted."),  # a paragraph break inside the text
        ("Text\u00a0A", "Text A"),
        ("Caf\u00e9", "Cafe\u0301"),  # what the PSA shows, not what it means
    ],
)
def test_indentation_and_inner_changes_are_different_text(shown: str, approved: str) -> None:
    assert not same_text(shown, approved)


@pytest.mark.parametrize("text", ["Done.", "   padded text", "## Problem\n\n    code\n---\nnot the marker"])
def test_without_marker_undoes_with_marker(text: str) -> None:
    assert without_marker(with_marker(text, MARKER), MARKER) == text
    assert without_marker(with_marker(text, MARKER).replace("\n", "\r\n") + "\r\n\r\n", MARKER) == text


def test_without_marker_leaves_text_without_this_marker_alone() -> None:
    other = with_marker("Done.", "ref:fp-wb_other")
    assert without_marker(other, MARKER) == other
    assert without_marker("Done.\n---\nFlowPilot ref:fp-wb_abc1234", MARKER).endswith("ref:fp-wb_abc1234")
