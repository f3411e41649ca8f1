"""Rendering a fix's script: `{{name}}` placeholders replaced by safely quoted literals. Pure: no AWS, no I/O.

Every value becomes ONE complete single-quoted literal of the script's language, so no value can leave its
argument: the template writes `-ComputerName {{host}}`, never `'{{host}}'`. Because a quoted literal is only
inert where the language reads code, a placeholder anywhere else (inside a string, a comment, a here-doc,
a `${...}` expansion, after an escape character or `$`/`@`) is refused rather than rendered. The lexers
below are deliberately conservative: when unsure, a placeholder counts as unsafe.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from flowpilot.errors import InvalidInput
from flowpilot.models import ScriptLanguage

PLACEHOLDER = re.compile(r"\{\{[ \t]*([A-Za-z_][A-Za-z0-9_]{0,63})[ \t]*\}\}")

# Names that say "secret". Long words match anywhere in the name; short ones only as a whole word
# (`api_key`, `AdminPin`), so `keyboard_layout` or `ping_target` are not mistaken for secrets.
_SECRET_ANYWHERE = re.compile(r"passw|passwd|passphrase|secret|token|credential|apikey|privatekey", re.I)
_SECRET_WORDS = {"key", "pin", "pwd", "pw", "otp", "cred", "creds", "auth", "cert", "sas", "psk"}
_WORD = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|[0-9]+")

MASK = "***"

# PowerShell reads all of these as a single quote (and these as a double quote) when it tokenizes.
PS_SINGLE_QUOTES = "'\u2018\u2019\u201a\u201b"
PS_DOUBLE_QUOTES = '"\u201c\u201d\u201e'


def placeholders(body: str) -> list[str]:
    """The parameter names a script uses, in order of first appearance."""
    return list(dict.fromkeys(m.group(1) for m in PLACEHOLDER.finditer(body)))


def is_sensitive(name: str) -> bool:
    """Whether a parameter's name says it holds a secret (a template may mark others explicitly)."""
    if _SECRET_ANYWHERE.search(name):
        return True
    return any(word.lower() in _SECRET_WORDS for word in _WORD.findall(name))


def sensitive_names(names: Iterable[str], marked: Iterable[str] = ()) -> list[str]:
    marked_set = set(marked)
    return sorted({n for n in names if n in marked_set or is_sensitive(n)} | marked_set)


def quote_powershell(value: str) -> str:
    """A PowerShell verbatim string: every single-quote character, look-alikes included, doubled."""
    return "'" + "".join(c * 2 if c in PS_SINGLE_QUOTES else c for c in value) + "'"


def quote_posix(value: str) -> str:
    """A POSIX shell single-quoted word: nothing is special inside, a quote is closed, escaped, reopened."""
    return "'" + value.replace("'", "'\\''") + "'"


def quote(value: str, language: ScriptLanguage) -> str:
    return quote_posix(value) if language is ScriptLanguage.posix else quote_powershell(value)


def check_placeholders(body: str, language: ScriptLanguage) -> None:
    """Refuse a script whose placeholders sit where a quoted literal would not be inert (422)."""
    unsafe = unsafe_placeholders(body, language)
    if unsafe:
        raise InvalidInput(
            "These placeholders sit inside a string, comment or here-document, or after an escape, where "
            "a quoted value is not safe; write each as a bare argument (-Name {{name}}): " + ", ".join(unsafe) + ".",
            code="unsafe_placeholder",
            details={"placeholders": unsafe},
        )


def render(body: str, language: ScriptLanguage, values: Mapping[str, str]) -> str:
    """The script with every placeholder replaced by its quoted value, in one pass (values are not rescanned).

    Raises InvalidInput `missing_parameters` naming every placeholder without a value.
    """
    missing = [name for name in placeholders(body) if name not in values]
    if missing:
        raise InvalidInput(
            f"Missing values for parameters: {', '.join(missing)}.",
            code="missing_parameters",
            details={"missing": missing},
        )
    check_placeholders(body, language)
    bad = [name for name in placeholders(body) if "\x00" in values[name]]
    if bad:
        raise InvalidInput(
            f"Parameter values cannot contain NUL characters: {', '.join(bad)}.",
            code="invalid_parameter_value",
            details={"parameters": bad},
        )
    return PLACEHOLDER.sub(lambda m: quote(values[m.group(1)], language), body)


def unsafe_placeholders(body: str, language: ScriptLanguage) -> list[str]:
    """Names of placeholders that are not in plain code context (each name once, in order)."""
    starts = {m.start(): m for m in PLACEHOLDER.finditer(body)}
    if not starts:
        return []
    if language is ScriptLanguage.posix:
        unsafe_at, escapes = _posix_unsafe_starts(body, starts), "$\\`"
    else:
        # `$'…'`/`@'…'` are not plain literals; a backslash is ordinary in PowerShell (C:\Users\{{user}}).
        unsafe_at, escapes = _powershell_unsafe_starts(body, starts), "$@`"
    unsafe_at.update(pos for pos in starts if pos > 0 and body[pos - 1] in escapes)
    return list(dict.fromkeys(starts[pos].group(1) for pos in sorted(unsafe_at)))


# --- the lexers: a stack of frames; a placeholder is safe only when every open frame is code ---


@dataclass
class _Frame:
    kind: str  # "code" (top level or a command substitution / subexpression in code), or a string, comment…
    depth: int = 0  # open ( and { inside this frame, so the frame closes at its own ) or }
    cases: int = 0  # open `case … esac` (POSIX), whose pattern `)`s close nothing


def _safe(stack: list[_Frame]) -> bool:
    return all(frame.kind == "code" for frame in stack)


_WORD_START = " \t\n;&|()"


def _posix_unsafe_starts(body: str, starts: dict[int, re.Match[str]]) -> set[int]:
    unsafe: set[int] = set()
    stack = [_Frame("code")]
    heredocs: list[tuple[str, bool]] = []
    i, n = 0, len(body)
    while i < n:
        if i in starts:
            if not _safe(stack):
                unsafe.add(i)
            i = starts[i].end()
            continue
        frame, c = stack[-1], body[i]
        at_word_start = i == 0 or body[i - 1] in _WORD_START
        if frame.kind in ("code", "param"):
            if c == "\\":
                i += 2
                continue
            if c == "'":
                stack.append(_Frame("sq"))
            elif c == '"':
                stack.append(_Frame("dq"))
            elif c == "`":
                stack.append(_Frame("bq"))
            elif body.startswith(("$'", "$(", "${"), i):
                stack.append(_Frame({"'": "ansi", "(": "code", "{": "param"}[body[i + 1]]))
                i += 1
            elif c == "#" and at_word_start:
                stack.append(_Frame("comment"))
            elif body.startswith("<<", i) and not body.startswith("<<<", i):
                i = _read_heredoc_operator(body, i + 2, heredocs)
                if i < 0:  # malformed: nothing after it can be trusted
                    unsafe.update(starts)
                    return unsafe
                continue
            elif at_word_start and re.match(r"case[ \t]", body[i : i + 5]):
                frame.cases += 1
            elif at_word_start and re.match(r"esac(?![A-Za-z0-9_])", body[i : i + 5]):
                frame.cases = max(0, frame.cases - 1)
            elif c in "({":
                frame.depth += 1
            elif c in ")}":
                closer = ")" if frame.kind == "code" else "}"
                if frame.depth > 0:
                    frame.depth -= 1
                elif c == closer and len(stack) > 1 and not (c == ")" and frame.cases):
                    stack.pop()
            elif c == "\n" and heredocs:
                i = _skip_heredoc_bodies(body, i + 1, heredocs, starts, unsafe)
                continue
        elif frame.kind == "sq":
            if c == "'":
                stack.pop()
        elif frame.kind in ("dq", "bq", "ansi"):
            if c == "\\":
                i += 2
                continue
            if c == {"dq": '"', "bq": "`", "ansi": "'"}[frame.kind]:
                stack.pop()
            elif frame.kind == "dq" and body.startswith(("$(", "${"), i):
                stack.append(_Frame("code" if body[i + 1] == "(" else "param"))
                i += 1
        elif frame.kind == "comment" and c == "\n":
            stack.pop()
            if heredocs:
                i = _skip_heredoc_bodies(body, i + 1, heredocs, starts, unsafe)
                continue
        i += 1
    return unsafe


def _read_heredoc_operator(body: str, i: int, pending: list[tuple[str, bool]]) -> int:
    """After `<<`: read `-`, blanks and the delimiter word (quotes removed); returns where code resumes."""
    strip_tabs = body.startswith("-", i)
    i += 1 if strip_tabs else 0
    while i < len(body) and body[i] in " \t":
        i += 1
    start = i
    while i < len(body) and body[i] not in " \t\n;&|<>()":
        i += 1
    delimiter = re.sub(r"[\\'\"]", "", body[start:i])
    if not delimiter:
        return -1
    pending.append((delimiter, strip_tabs))
    return i


def _skip_heredoc_bodies(
    body: str, i: int, pending: list[tuple[str, bool]], starts: dict[int, re.Match[str]], unsafe: set[int]
) -> int:
    """Skip the here-documents whose bodies start at `i` (placeholders inside are unsafe)."""
    n = len(body)
    while pending:
        delimiter, strip_tabs = pending.pop(0)
        while i < n:
            end = body.find("\n", i)
            end = n if end < 0 else end
            unsafe.update(pos for pos in starts if i <= pos < end)
            line = body[i:end].lstrip("\t") if strip_tabs else body[i:end]
            i = end + 1
            if line == delimiter:
                break
    return i


def _powershell_unsafe_starts(body: str, starts: dict[int, re.Match[str]]) -> set[int]:
    unsafe: set[int] = set()
    stack = [_Frame("code")]
    i, n = 0, len(body)
    while i < n:
        if i in starts:
            if not _safe(stack):
                unsafe.add(i)
            i = starts[i].end()
            continue
        frame, c = stack[-1], body[i]
        nxt = body[i + 1] if i + 1 < n else ""
        if frame.kind == "code":
            if c == "`":
                i += 2
                continue
            if c == "@" and nxt and nxt in PS_SINGLE_QUOTES + PS_DOUBLE_QUOTES and _ends_line(body, i + 2):
                family = PS_SINGLE_QUOTES if nxt in PS_SINGLE_QUOTES else PS_DOUBLE_QUOTES
                i = _skip_here_string(body, i + 2, family, starts, unsafe)
                continue
            if c in PS_SINGLE_QUOTES:
                stack.append(_Frame("sq"))
            elif c in PS_DOUBLE_QUOTES:
                stack.append(_Frame("dq"))
            elif c == "<" and nxt == "#":
                stack.append(_Frame("block"))
                i += 1
            elif c == "#" or body.startswith("--%", i):  # a comment, or stop-parsing: the line is verbatim
                stack.append(_Frame("comment"))
            elif c == "$" and nxt == "{":
                stack.append(_Frame("braced_variable"))
                i += 1
            elif c == "(":
                frame.depth += 1
            elif c == ")":
                if frame.depth > 0:
                    frame.depth -= 1
                elif len(stack) > 1:
                    stack.pop()
        elif frame.kind in ("sq", "dq"):
            quotes = PS_SINGLE_QUOTES if frame.kind == "sq" else PS_DOUBLE_QUOTES
            if frame.kind == "dq" and c == "`":
                i += 2
                continue
            if c in quotes:
                if nxt and nxt in quotes:  # a doubled quote is one literal quote
                    i += 2
                    continue
                stack.pop()
            elif frame.kind == "dq" and c == "$" and nxt == "(":
                stack.append(_Frame("code"))
                i += 1
        elif frame.kind == "comment":
            if c in "\r\n":
                stack.pop()
        elif frame.kind == "block":
            if c == "#" and nxt == ">":
                stack.pop()
                i += 1
        elif frame.kind == "braced_variable":
            if c == "`":
                i += 2
                continue
            if c == "}":
                stack.pop()
        i += 1
    return unsafe


def _ends_line(body: str, i: int) -> bool:
    end = body.find("\n", i)
    return not body[i : len(body) if end < 0 else end].strip()


def _skip_here_string(body: str, i: int, family: str, starts: dict[int, re.Match[str]], unsafe: set[int]) -> int:
    """Skip a here-string from the end of its `@'` line to the line that starts with a quote and `@`."""
    n = len(body)
    while i < n:
        end = body.find("\n", i)
        end = n if end < 0 else end
        unsafe.update(pos for pos in starts if i <= pos < end)
        i = end + 1
        if i + 1 < n and body[i] in family and body[i + 1] == "@":
            return i + 2
    return n
