"""The secret-scanner corpus: reads `credentials.txt` and `benign.txt` (format in README.md) and scores a scanner.

Shared by `tests/unit/test_scanner_corpus.py` (holds the targets) and `tests/bench/scanner_corpus.py` (prints
the figures), so both count a case the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from flowpilot.scanner import Finding

HERE = Path(__file__).resolve().parent
HELD_OUT_MARK = "# === held-out ==="
SECRET_OPEN, SECRET_CLOSE = "«", "»"
# Names for characters that cannot be read (or would put a whole token in the file) in plain text.
ESCAPES = {
    "{NL}": "\n",
    "{TAB}": "\t",
    "{ZWSP}": "\u200b",
    "{ZWNJ}": "\u200c",
    "{ZWJ}": "\u200d",
    "{WJ}": "\u2060",
    "{SHY}": "\u00ad",
    "{BOM}": "\ufeff",
    "{NBSP}": "\u00a0",
    "{LS}": "\u2028",
}
INVISIBLE_NAMES = {name: char for name, char in ESCAPES.items() if name not in ("{NL}", "{TAB}", "{NBSP}", "{LS}")}


@dataclass(frozen=True)
class Case:
    """One corpus case: the text as scanned, where its marked secrets start and end, and its origin."""

    text: str
    secrets: tuple[tuple[int, int], ...]
    held_out: bool
    source_line: int


def position(text: str, offset: int) -> tuple[int, int]:
    """1-based (line, column) of `offset` in `text`, as the scanner reports them."""
    return text.count("\n", 0, offset) + 1, offset - (text.rfind("\n", 0, offset) + 1) + 1


def _decode(raw: str, source: str) -> tuple[str, tuple[tuple[int, int], ...]]:
    for name, char in ESCAPES.items():
        raw = raw.replace(name, char)
    text: list[str] = []
    secrets: list[tuple[int, int]] = []
    start: int | None = None
    for char in raw:
        if char == SECRET_OPEN:
            if start is not None:
                raise ValueError(f"{source}: nested {SECRET_OPEN}")
            start = len(text)
        elif char == SECRET_CLOSE:
            if start is None or start == len(text):
                raise ValueError(f"{source}: {SECRET_CLOSE} without a secret before it")
            secrets.append((start, len(text)))
            start = None
        else:
            text.append(char)
    if start is not None:
        raise ValueError(f"{source}: unclosed {SECRET_OPEN}")
    return "".join(text), tuple(secrets)


def load(name: str) -> list[Case]:
    """The cases of `name` (`credentials` or `benign`), in file order."""
    path = HERE / f"{name}.txt"
    cases: list[Case] = []
    held_out = False
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip() == HELD_OUT_MARK:
            held_out = True
            continue
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        text, secrets = _decode(line, f"{path.name}:{number}")
        cases.append(Case(text=text, secrets=secrets, held_out=held_out, source_line=number))
    return cases


def missed_secrets(case: Case, findings: Sequence[Finding]) -> list[tuple[int, int]]:
    """The (line, column) of each marked secret no finding starts at."""
    reported = {(f.line, f.column) for f in findings}
    return [position(case.text, start) for start, _ in case.secrets if position(case.text, start) not in reported]


def figures(scan: Callable[[str], Sequence[Finding]]) -> dict[str, float | int]:
    """Recall on credential cases and false-positive rate on benign cases: whole corpus, tuned part, held-out part."""
    credentials, benign = load("credentials"), load("benign")
    caught = {id(case) for case in credentials if not missed_secrets(case, scan(case.text))}
    flagged = {id(case) for case in benign if scan(case.text)}
    result: dict[str, float | int] = {}
    for part, keep in (("", lambda _: True), ("tuned_", lambda c: not c.held_out), ("held_out_", lambda c: c.held_out)):
        creds = [case for case in credentials if keep(case)]
        plain = [case for case in benign if keep(case)]
        hits = sum(id(case) in caught for case in creds)
        false_positives = sum(id(case) in flagged for case in plain)
        result[f"{part}credential_cases"] = len(creds)
        result[f"{part}caught"] = hits
        result[f"{part}recall"] = hits / len(creds)
        result[f"{part}benign_cases"] = len(plain)
        result[f"{part}false_positives"] = false_positives
        result[f"{part}false_positive_rate"] = false_positives / len(plain)
    return result


MAX_TEXT = 20_000  # the longest note or preview the scanner sees


def _fill(unit: str, *, prefix: str = "") -> str:
    return (prefix + unit * (MAX_TEXT // len(unit) + 1))[:MAX_TEXT]


def adversarial_inputs() -> dict[str, str]:
    """20,000-character texts built from what the detectors repeat (nouns, links, separators, prefixes).

    None holds a secret: a scanner that backtracks on them is slow, one that over-reads them reports noise.
    """
    return {
        "password words": _fill("password "),
        "password is": _fill("password is "),
        "pw colon": _fill("pw: "),
        "reset to": _fill("reset bob to "),
        "net user": _fill("net user "),
        "filler words": _fill(" word", prefix="password"),
        "commas": _fill(",", prefix="password"),
        "links": _fill(" is now", prefix="password"),
        "table rows": _fill("| x |\n", prefix="| Password |\n|---|\n"),
        "pipes": _fill("|"),
        "pipe lines": _fill("|\n"),
        "dotted word": _fill("a."),
        "dots": _fill("."),
        "underscores": _fill("a_"),
        "hyphens": _fill("a-"),
        "one long word": _fill("a"),
        "letters and digits": _fill("A1"),
        "spaces": _fill(" "),
        "newlines": _fill("\n"),
        "zero-width spaces": _fill("\u200b"),
        "split letters": _fill("x\u200b"),
        "user flags": _fill("-u a -p "),
        "account slashes": _fill("admin/"),
        "echo pipes": _fill("echo x | "),
        "aws prefixes": _fill("AKIA"),
        "jwt prefixes": _fill("eyJa."),
        "mysql": _fill("mysql -u root "),
        "pin": _fill("PIN is "),
        "quotes": _fill("password is '"),
    }
