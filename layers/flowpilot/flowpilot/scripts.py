"""Rendering a fix's script: `{{name}}` placeholders replaced by safely quoted literals. Pure: no AWS, no I/O.

Every value becomes ONE complete single-quoted literal of the script's language, so no value can leave its
argument: the template writes `-ComputerName {{host}}`, never `'{{host}}'`. Because a quoted literal is only
inert where the language reads code, a placeholder anywhere else (inside a string, a comment, a here-doc,
a `${...}` expansion, after an escape character or `$`/`@`) is refused rather than rendered. So is a placeholder
the script *evaluates*, where even a quoted value runs as code: POSIX arithmetic (`$(( ))`, `(( ))`, `$[ ]`,
`let`, `declare -i`), `[[ ]]` numeric tests, array subscripts and variable names (bash evaluates `a[$(cmd)]`),
`eval`/`source`/`trap`, shells and interpreters (`sh -c`, `su -c`, `ssh`, `xargs`, `awk`, …), the command name
itself; in PowerShell `Invoke-Expression`, `[scriptblock]::Create`, `powershell`/`cmd`, `Start-Process`,
`Add-Type`, `&`/`.` calls and `-ScriptBlock`/`-FilePath` arguments. Values are also followed through shell
variables (over-approximated) to those places. Not followed: data passed through files, pipes into other
programs, or scripts the rendered script runs. The lexers are deliberately conservative: when unsure, a
placeholder counts as unsafe.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from flowpilot.errors import InvalidInput
from flowpilot.models import ScriptLanguage

PLACEHOLDER = re.compile(r"\{\{[ \t]*([A-Za-z_][A-Za-z0-9_]{0,63})[ \t]*\}\}")

# Names that say "secret". Long words match anywhere in the name; short ones only as a whole word
# (`api_key`, `AdminPin`), so `keyboard_layout` or `ping_target` are not mistaken for secrets.
# Anywhere in the name, however it is run together ("adminpass", "wifikey", "connectionString"): "pass" but
# not bypass/compass/passive/passage/passport/passenger/passthrough; "key" ending a run of letters, not
# "keyboard" (or the animals ending in -key).
_SECRET_ANYWHERE = re.compile(
    r"passw|passphrase|secret|token|credential|apikey|privatekey|bearer|jwt|bitlocker|ntlm"
    r"|(?<!by)(?<!com)pass(?!ive|age|port|enger|through|thru)"
    r"|(?<!mon)(?<!tur)(?<!hoc)(?<!don)(?<!hot)key(?![a-z])"
    r"|conn(?:ection)?_?str",
    re.I,
)
_SECRET_WORDS = {"key", "pin", "pwd", "pw", "otp", "cred", "creds", "auth", "cert", "sas", "psk", "hash", "wpa"}
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
    reasons = unsafe_reasons(body, language)
    if reasons:
        unsafe = list(reasons)
        raise InvalidInput(
            "These placeholders sit where a quoted value is not safe (inside a string, comment or here-document, "
            "after an escape, or where the shell evaluates text as code); write each as a bare argument of an "
            "ordinary command (-Name {{name}}): " + "; ".join(f"{name}: {why}" for name, why in reasons.items()) + ".",
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
    return list(unsafe_reasons(body, language))


def unsafe_reasons(body: str, language: ScriptLanguage) -> dict[str, str]:
    """Each unsafe placeholder's name (in order of first unsafe use) with why it is unsafe."""
    starts = {m.start(): m for m in PLACEHOLDER.finditer(body)}
    if not starts:
        return {}
    if language is ScriptLanguage.posix:
        # `${`/`$'`/backslash-escaped placeholders are caught by the lexer or here.
        unsafe_at, escapes = _posix_unsafe_starts(body, starts), "$\\`"
    else:
        # `$'…'`/`@'…'` are not plain literals; a backslash is ordinary in PowerShell (C:\Users\{{user}}).
        unsafe_at, escapes = _powershell_unsafe_starts(body, starts), "$@`"
    for pos in starts:
        if pos > 0 and body[pos - 1] in escapes:
            unsafe_at.setdefault(pos, f"it follows `{body[pos - 1]}`, which changes what the value means")
    reasons: dict[str, str] = {}
    for pos in sorted(unsafe_at):
        reasons.setdefault(starts[pos].group(1), unsafe_at[pos])
    return reasons


# --- the lexers: a stack of frames; a placeholder is safe only when every open frame is code ---


@dataclass
class _Frame:
    kind: str  # "code" (top level or a command substitution / subexpression in code), or a string, comment…
    depth: int = 0  # open ( and { inside this frame, so the frame closes at its own ) or }
    cases: int = 0  # open `case … esac` (POSIX), whose pattern `)`s close nothing
    start: int = 0  # where the frame's own text starts (after its opener)
    cmd_start: int = 0  # POSIX code frames: where the current simple command starts
    opens: list[str] = field(default_factory=list)  # POSIX: "(" subshell, "A" array literal, "{" group/brace
    inner: list[int] = field(default_factory=list)  # POSIX `[[ ]]`: the placeholders inside it


def _safe(stack: list[_Frame]) -> bool:
    return all(frame.kind == "code" for frame in stack)


_WORD_START = " \t\n;&|()"
_IN_TEXT = "it sits inside a string, comment, here-document or ${...} expansion"
_ARITHMETIC = (
    "it is inside shell arithmetic ($(( )), (( )) or $[ ]), which evaluates even a quoted value as an expression "
    "and runs any $(...) or `...` in it"
)
_CONDITIONAL = (
    "it is inside a [[ ]] test that compares numbers (-eq/-ne/-lt/-le/-gt/-ge) or checks -v/-R: bash evaluates "
    "those operands as arithmetic, running any $(...) in an array subscript (use `[ … -gt … ]` instead)"
)


@dataclass
class _PosixScan:
    unsafe: dict[int, str] = field(default_factory=dict)
    segments: list[tuple[int, int]] = field(default_factory=list)  # simple commands in code frames
    sinks: list[tuple[str, str]] = field(default_factory=list)  # (what, text) the shell evaluates as code
    conds: list[tuple[int, int, list[int]]] = field(default_factory=list)  # `[[ … ]]` text and placeholders


def _posix_unsafe_starts(body: str, starts: dict[int, re.Match[str]]) -> dict[int, str]:
    scan = _PosixScan()
    if not _scan_posix(body, starts, scan):  # a malformed here-document: nothing after it can be trusted
        return dict.fromkeys(starts, "the script has a malformed here-document")
    for start, end, inner in scan.conds:
        text = PLACEHOLDER.sub(" ", body[start:end])
        if re.search(r"(?:^|\s)-(?:eq|ne|lt|le|gt|ge|v|R)(?=\s)", text):
            for pos in inner:
                scan.unsafe.setdefault(pos, _CONDITIONAL)
            scan.sinks.append(("a [[ ]] numeric test", text))
    _check_posix_commands(body, starts, scan)
    return scan.unsafe


def _scan_posix(body: str, starts: dict[int, re.Match[str]], scan: _PosixScan) -> bool:
    stack = [_Frame("code")]
    heredocs: list[tuple[str, bool]] = []
    i, n = 0, len(body)

    def end_command(frame: _Frame, at: int, resume: int) -> None:
        if frame.kind == "code":
            scan.segments.append((frame.cmd_start, at))
            frame.cmd_start = resume

    while i < n:
        if i in starts:
            kinds = {frame.kind for frame in stack}
            if kinds - {"code", "cond", "arith", "arithb"}:
                scan.unsafe.setdefault(i, _IN_TEXT)
            elif kinds & {"arith", "arithb"}:
                scan.unsafe.setdefault(i, _ARITHMETIC)
            for frame in stack:
                if frame.kind == "cond":
                    frame.inner.append(i)
            i = starts[i].end()
            continue
        frame, c = stack[-1], body[i]
        at_word_start = i == 0 or body[i - 1] in _WORD_START
        if frame.kind in ("code", "param", "arith", "arithb", "cond"):
            if c == "\\":
                i += 2
                continue
            if c == "'":
                stack.append(_Frame("sq"))
            elif c == '"':
                stack.append(_Frame("dq"))
            elif c == "`":
                stack.append(_Frame("bq"))
            elif body.startswith(("$((", "$["), i):
                width = 3 if body[i + 1] == "(" else 2
                stack.append(_Frame("arith" if width == 3 else "arithb", start=i + width))
                i += width
                continue
            elif body.startswith(("$'", "$(", "${"), i):
                stack.append(
                    _Frame({"'": "ansi", "(": "code", "{": "param"}[body[i + 1]], start=i + 2, cmd_start=i + 2)
                )
                i += 2
                continue
            elif frame.kind == "code" and at_word_start and body.startswith("((", i):
                stack.append(_Frame("arith", start=i + 2))
                i += 2
                continue
            elif frame.kind == "code" and at_word_start and re.match(r"\[\[[ \t\n]", body[i : i + 3]):
                stack.append(_Frame("cond", start=i + 2))
                i += 2
                continue
            elif frame.kind == "cond" and not frame.depth and body.startswith("]]", i) and body[i - 1] in " \t\n":
                scan.conds.append((frame.start, i, frame.inner))
                stack.pop()
                i += 2
                continue
            elif frame.kind == "arithb" and c in "[]":
                if c == "[":
                    frame.depth += 1
                elif frame.depth:
                    frame.depth -= 1
                else:
                    scan.sinks.append(("$[ ] arithmetic", body[frame.start : i]))
                    stack.pop()
            elif frame.kind == "arith" and c == ")" and not frame.depth:
                scan.sinks.append(("shell arithmetic", body[frame.start : i]))
                stack.pop()
                i += 2 if body.startswith("))", i) else 1
                continue
            elif c == "#" and at_word_start and frame.kind != "arith":
                stack.append(_Frame("comment"))
            elif body.startswith("<<", i) and not body.startswith("<<<", i):
                i = _read_heredoc_operator(body, i + 2, heredocs)
                if i < 0:
                    return False
                continue
            elif at_word_start and re.match(r"case[ \t]", body[i : i + 5]):
                frame.cases += 1
            elif at_word_start and re.match(r"esac(?![A-Za-z0-9_])", body[i : i + 5]):
                frame.cases = max(0, frame.cases - 1)
            elif c in "({":
                if c == "(" and i > 0 and body[i - 1] == "=":
                    frame.opens.append("A")  # an array literal: its words are values of one assignment
                elif c == "(" or (at_word_start and body[i + 1 : i + 2] in (" ", "\t", "\n")):
                    frame.opens.append(c)
                    end_command(frame, i, i + 1)
                else:
                    frame.opens.append("b")  # brace expansion
                frame.depth += 1
            elif c in ")}":
                opened = frame.opens.pop() if frame.opens else ""
                if (c == ")" and opened != "A") or (c == "}" and opened == "{"):
                    end_command(frame, i, i + 1)
                closer = ")" if frame.kind == "code" else "}"
                if frame.depth > 0:
                    frame.depth -= 1
                elif c == closer and len(stack) > 1 and not (c == ")" and frame.cases):
                    if frame.kind == "param":
                        _param_sink(body[frame.start : i], scan)
                    stack.pop()
            elif c == "\n" and heredocs:
                end_command(frame, i, i + 1)
                i = _skip_heredoc_bodies(body, i + 1, heredocs, starts, scan.unsafe)
                frame.cmd_start = i
                continue
            elif c in ";&|\n" and "A" not in frame.opens:
                end_command(frame, i, i + 1)
        elif frame.kind == "sq":
            if c == "'":
                stack.pop()
        elif frame.kind in ("dq", "bq", "ansi"):
            if c == "\\":
                i += 2
                continue
            if c == {"dq": '"', "bq": "`", "ansi": "'"}[frame.kind]:
                stack.pop()
            elif frame.kind == "dq" and body.startswith(("$((", "$["), i):
                width = 3 if body[i + 1] == "(" else 2
                stack.append(_Frame("arith" if width == 3 else "arithb", start=i + width))
                i += width
                continue
            elif frame.kind == "dq" and body.startswith(("$(", "${"), i):
                stack.append(_Frame("code" if body[i + 1] == "(" else "param", start=i + 2, cmd_start=i + 2))
                i += 2
                continue
        elif frame.kind == "comment" and c == "\n":
            stack.pop()
            end_command(stack[-1], i, i + 1)
            if heredocs:
                i = _skip_heredoc_bodies(body, i + 1, heredocs, starts, scan.unsafe)
                stack[-1].cmd_start = i
                continue
        i += 1
    end_command(stack[0], n, n)
    for frame in stack[1:]:  # unterminated: still check what was written
        end_command(frame, n, n)
    return True


def _param_sink(text: str, scan: _PosixScan) -> None:
    """`${!x}`, `${a[$i]}` and `${s:$off}` evaluate a variable's value (indirection, subscript, offset)."""
    name = r"(?:[A-Za-z_][A-Za-z0-9_]*|[0-9]+|[@*])"
    what = "a ${...} indirection, subscript or offset"
    if text.startswith("!"):
        scan.sinks.append((what, text[1:]))
    else:
        subscript = re.match(rf"#?{name}(\[(?![@*]\]).*)", text, re.S)
        offset = re.match(rf"{name}(?:\[[^\]]*\])?[ \t]*(:(?![-=?+]).*)", text, re.S)
        found = subscript or offset
        if found:
            scan.sinks.append((what, found.group(1)))


# --- POSIX commands: what runs each placeholder's value, and where a variable's value is evaluated ---

_ASSIGNMENT = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(\[.*?\])?\+?=")
_REDIRECTION = re.compile(r"[0-9]*(?:<<<|<<-?|<>|>>|>\||<&|>&|&>>|&>|<|>)")
_RESERVED = {"if", "then", "elif", "else", "fi", "do", "done", "while", "until", "!", "{", "}", "in", "esac", "time"}
_DECLARATIONS = {"declare", "typeset", "local", "export", "readonly"}
_NAME_TAKERS = {"unset", "read", "mapfile", "readarray", "getopts", "wait"}
_SHELLS = {"sh", "bash", "dash", "zsh", "ksh", "ksh93", "mksh", "ash", "busybox", "fish", "csh", "tcsh", "pwsh"}
_INTERPRETERS = {
    *("awk", "gawk", "mawk", "nawk", "perl", "python", "python2", "python3", "ruby", "node", "nodejs", "php"),
    *("lua", "tclsh", "expect", "osascript", "powershell"),
}
_EVALUATORS = {
    *("eval", "source", ".", "trap", "alias", "let", "bind", "fc", "compgen", "complete", "su", "runuser"),
    *("ssh", "xargs", "watch", "script", "flock", "parallel", "at", "batch", "unbuffer", "sg", "newgrp"),
    *_SHELLS,
    *_INTERPRETERS,
}
# Commands that run the rest of their words as a command: (their options that take a value, leading operands).
_WRAPPERS: dict[str, tuple[set[str], int]] = {
    "sudo": ({"-u", "-g", "-h", "-p", "-C", "-D", "-r", "-t", "-T", "-U", "--user", "--group", "--host"}, 0),
    "doas": ({"-u", "-C"}, 0),
    "env": ({"-u", "-C", "--unset", "--chdir"}, 0),
    "nice": ({"-n", "--adjustment"}, 0),
    "ionice": ({"-c", "-n", "--class", "--classdata"}, 0),
    "timeout": ({"-s", "-k", "--signal", "--kill-after"}, 1),
    "stdbuf": ({"-i", "-o", "-e"}, 0),
    "chroot": (set(), 1),
    "exec": ({"-a"}, 0),
    "time": ({"-f", "-o"}, 0),
    **dict.fromkeys(("nohup", "command", "builtin", "setsid", "systemd-run"), (set[str](), 0)),
}


def _split_words(body: str, start: int, end: int) -> list[tuple[int, int]]:
    """The words of a simple command (spans), split at unquoted blanks; stops at a comment."""
    words: list[tuple[int, int]] = []
    closers: list[str] = []
    word: int | None = None
    i = start
    while i < end:
        c = body[i]
        if not closers and c in " \t\r\n":
            if word is not None:
                words.append((word, i))
                word = None
            i += 1
            continue
        if not closers and c == "#" and word is None:
            break
        if word is None:
            word = i
        if closers and closers[-1] == "'":
            if c == "'":
                closers.pop()
        elif c == "\\":
            i += 2
            continue
        elif closers and closers[-1] in '"`':
            if c == closers[-1]:
                closers.pop()
            elif body.startswith(("$(", "${"), i):
                closers.append(")" if body[i + 1] == "(" else "}")
                i += 1
        elif c in "'\"`":
            closers.append(c)
        elif c in "({":
            closers.append(")" if c == "(" else "}")
        elif closers and c == closers[-1]:
            closers.pop()
        i += 1
    if word is not None:
        words.append((word, min(i, end)))
    return words


def _unquoted(word: str) -> str:
    return re.sub(r"[\\'\"]", "", word)


def _refs(text: str) -> set[str]:
    """Variable names a piece of shell text may read (over-approximated; "@" stands for the positional ones)."""
    text = PLACEHOLDER.sub(" ", text)
    names = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", text))
    if re.search(r"\$\{?[!#]?(?:[0-9]|[@*])", text):
        names.add("@")
    return names


def _dollar_refs(text: str) -> str:
    return " ".join(re.findall(r"\$\{?!?[A-Za-z_0-9@*]+", text))


def _check_posix_commands(body: str, starts: dict[int, re.Match[str]], scan: _PosixScan) -> None:
    """Refuse placeholders that a command evaluates, names or runs; then follow values through variables."""
    functions = set(re.findall(r"(?:^|[\s;&|(){}])(?:function[ \t]+)?([A-Za-z_][\w.:-]*)[ \t]*\([ \t]*\)", body))
    functions |= set(re.findall(r"\bfunction[ \t]+([A-Za-z_][\w.:-]*)", body))
    all_names = {m.group(1) for m in starts.values()}
    assignments: list[tuple[str, int, int]] = []  # (variable, span of what it gets); "@" = the positional ones
    inputs: set[str] = set()  # variables read from input, which may carry any value
    integers: set[str] = set()

    def refuse(spans: Iterable[tuple[int, int]], why: str) -> None:
        for s, e in spans:
            for pos in starts:
                if s <= pos < e:
                    scan.unsafe.setdefault(pos, why)

    for seg_start, seg_end in scan.segments:
        words = _split_words(body, seg_start, seg_end)
        texts = [body[s:e] for s, e in words]
        k = 0
        while k < len(words) and texts[k] in _RESERVED:
            k += 1
        if k < len(words) and texts[k] in ("for", "select"):
            if k + 1 < len(words) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", texts[k + 1]):
                assignments.append((texts[k + 1], words[k + 1][1], seg_end))
            continue
        if k < len(words) and texts[k] in ("case", "function"):
            continue
        while k < len(words):  # assignments and redirections before the command
            m = _ASSIGNMENT.match(texts[k])
            if m:
                s = words[k][0]
                if m.group(2):
                    refuse([(s, s + m.end())], "it is in an array subscript, which bash evaluates as arithmetic")
                    scan.sinks.append(("an array subscript", m.group(2)))
                assignments.append((m.group(1), s + m.end(), words[k][1]))
                k += 1
                continue
            r = _REDIRECTION.match(texts[k])
            if r:
                k += 1 if r.end() < len(texts[k]) else 2
                continue
            break
        command = ""
        while k < len(words):
            if any(words[k][0] <= pos < words[k][1] for pos in starts):
                refuse([words[k]], "it is the name of the command to run")
                break
            command = _unquoted(texts[k]).rsplit("/", 1)[-1]
            if command not in _WRAPPERS:
                break
            with_value, operands = _WRAPPERS[command]
            k += 1
            while k < len(words):
                t = texts[k]
                if t == "--":
                    k += 1
                    break
                if command == "env" and _ASSIGNMENT.match(t):
                    k += 1
                elif t.startswith("-") and len(t) > 1:
                    shell_mode = (command == "sudo" and not t.startswith("--") and set(t[1:]) & {"s", "i"}) or (
                        command == "sudo" and t in ("--shell", "--login")
                    )
                    if shell_mode or (command == "env" and (t.startswith("-S") or t.startswith("--split"))):
                        refuse(words[k:], f"`{command} {t}` hands its command to a shell, which re-reads the value")
                    k += 2 if t in with_value else 1
                elif operands:
                    k += operands
                    break
                else:
                    break
            command = ""
        if not command:
            continue
        args, arg_texts = words[k + 1 :], texts[k + 1 :]
        args_text = body[args[0][0] : seg_end] if args else ""
        if command in _EVALUATORS or (command == "find" and {"-exec", "-execdir", "-ok", "-okdir"} & set(arg_texts)):
            refuse(args, f"`{command}` runs its arguments (or text built from them) as code")
            scan.sinks.append((f"`{command}`", args_text))
        elif command == "sed":
            scripted = any(re.match(r"-[a-zA-Z]*[ef]|--(?:expression|file)", t) for t in arg_texts)
            for j, t in enumerate(arg_texts):
                first_operand = not scripted and not t.startswith("-") and all(u.startswith("-") for u in arg_texts[:j])
                after_script_option = j > 0 and re.fullmatch(r"-[a-zA-Z]*[ef]|--(?:expression|file)", arg_texts[j - 1])
                if first_operand or after_script_option or re.match(r"(?:-[a-zA-Z]*e|--expression=).", t):
                    refuse([args[j]], "it is a sed script, which can run commands (`e`)")
        elif command in _DECLARATIONS:
            options = "".join(t[1:] for t in arg_texts if t[:1] in "-+" and not _ASSIGNMENT.match(t))
            if set(options) & set("inaA"):
                refuse(args, f"`{command} -{options}` evaluates values or names as arithmetic or references")
                scan.sinks.append((f"`{command} -{options}`", args_text))
            for (s, e), t in zip(args, arg_texts, strict=True):
                if t[:1] in "-+":
                    continue
                m = _ASSIGNMENT.match(t)
                if m and not m.group(2):
                    assignments.append((m.group(1), s + m.end(), e))
                    if "i" in options:
                        integers.add(m.group(1))
                    refuse([(s, s + m.end())], "it names a variable")
                else:
                    refuse([(s, e)], "it names a variable, and bash evaluates a subscript in a name")
                    scan.sinks.append(("a variable name", _dollar_refs(t)))
                    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", t) and "i" in options:
                        integers.add(t)
        elif command in _NAME_TAKERS:
            j = 0
            while j < len(args):
                r = _REDIRECTION.match(arg_texts[j])
                if r:
                    j += 1 if r.end() < len(arg_texts[j]) else 2
                    continue
                refuse([args[j]], f"`{command}` takes variable names, and bash evaluates a subscript in a name")
                scan.sinks.append(("a variable name", _dollar_refs(arg_texts[j])))
                if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", arg_texts[j]):
                    inputs.add(arg_texts[j])
                j += 1
        elif command in ("printf", "test", "["):
            flags = ("-v",) if command == "printf" else ("-v", "-R")
            for j, t in enumerate(arg_texts):
                if (j > 0 and arg_texts[j - 1] in flags) or (command == "printf" and t.startswith("-v") and t != "-v"):
                    refuse([args[j]], f"it is the variable name after `{command} -v`, where bash evaluates a subscript")
                    scan.sinks.append(("a variable name", _dollar_refs(t)))
                    name = t.removeprefix("-v")
                    if command == "printf" and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                        assignments.append((name, args[j][1], seg_end))
        elif command == "set" or command in functions:
            assignments.append(("@", args[0][0] if args else seg_end, seg_end))

    for name, s, e in assignments:  # `declare -i n` anywhere makes every `n=…` evaluate its value
        if name in integers:
            scan.sinks.append((f"the integer variable `{name}`", body[s:e]))
            refuse([(s, e)], f"it is assigned to `{name}`, declared -i, which evaluates the value as arithmetic")

    # Follow values through variables (over-approximated) to the places that evaluate them.
    taint: dict[str, set[str]] = {name: set(all_names) for name in inputs}
    changed = True
    while changed:
        changed = False
        for name, s, e in assignments:
            text = body[s:e]
            new = set(PLACEHOLDER.findall(text))
            for ref in _refs(text):
                new |= taint.get(ref, set())
            if not new <= taint.setdefault(name, set()):
                taint[name] |= new
                changed = True
    first: dict[str, int] = {}
    for pos, m in sorted(starts.items()):
        first.setdefault(m.group(1), pos)
    for what, text in scan.sinks:
        for ref in _refs(text):
            for name in sorted(taint.get(ref, ())):
                scan.unsafe.setdefault(
                    first[name], f"its value can reach {what} through the variable `{ref}`, which evaluates it as code"
                )


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
    body: str, i: int, pending: list[tuple[str, bool]], starts: dict[int, re.Match[str]], unsafe: dict[int, str]
) -> int:
    """Skip the here-documents whose bodies start at `i` (placeholders inside are unsafe)."""
    n = len(body)
    while pending:
        delimiter, strip_tabs = pending.pop(0)
        while i < n:
            end = body.find("\n", i)
            end = n if end < 0 else end
            for pos in starts:
                if i <= pos < end:
                    unsafe.setdefault(pos, _IN_TEXT)
            line = body[i:end].lstrip("\t") if strip_tabs else body[i:end]
            i = end + 1
            if line == delimiter:
                break
    return i


# --- PowerShell ---

# Commands and members that run text (or a program chosen by text) as code: a placeholder anywhere in the same
# statement is refused, as is every placeholder of a script that passes a variable to one of them.
_PS_EVALUATORS = re.compile(
    r"(?<![\w$-])(?:Invoke-Expression|iex|Start-Process|saps|start|Add-Type|Start-Job|sajb|Start-ThreadJob"
    r"|New-Module|nmo|Register-ScheduledJob|New-ScheduledTaskAction|Invoke-WmiMethod|Invoke-CimMethod"
    r"|powershell|powershell_ise|pwsh|cmd|wsl|bash|sh|ssh|runas|psexec|psexec64|schtasks|wmic|mshta|wscript"
    r"|cscript|rundll32|regsvr32)(?:\.exe)?(?![\w-])"
    r"|\[\s*(?:System\.Management\.Automation\.)?ScriptBlock\s*\]\s*::\s*Create"
    r"|\.(?:InvokeScript|NewScriptBlock|AddScript|Invoke)\s*\(|\$ExecutionContext",
    re.IGNORECASE,
)
# Invoke-Command / Start-Job style parameters whose argument is the code (or the script file) to run.
_PS_CODE_PARAMETER = re.compile(r"(?<![\w-])-(?:ScriptBlock|sb|FilePath|Command|EncodedCommand)\s*$", re.I)
_PS_CALL = re.compile(r"(?:^|[\s;|({}=])[&.]\s*$")


def _powershell_unsafe_starts(body: str, starts: dict[int, re.Match[str]]) -> dict[int, str]:
    unsafe: dict[int, str] = {}
    code = list(body)  # the body with strings and comments blanked, to find statements and commands
    stack = [_Frame("code")]
    i, n = 0, len(body)
    while i < n:
        if i in starts:
            if not _safe(stack):
                unsafe.setdefault(i, _IN_TEXT)
                code[i : starts[i].end()] = " " * (starts[i].end() - i)
            i = starts[i].end()
            continue
        frame, c = stack[-1], body[i]
        nxt = body[i + 1] if i + 1 < n else ""
        if not _safe(stack) and c not in "\r\n":
            code[i] = " "
        if frame.kind == "code":
            if c == "`":
                i += 2
                continue
            if c == "@" and nxt and nxt in PS_SINGLE_QUOTES + PS_DOUBLE_QUOTES and _ends_line(body, i + 2):
                family = PS_SINGLE_QUOTES if nxt in PS_SINGLE_QUOTES else PS_DOUBLE_QUOTES
                end = _skip_here_string(body, i + 2, family, starts, unsafe)
                code[i + 2 : end] = [ch if ch in "\r\n" else " " for ch in body[i + 2 : end]]
                code[i : i + 2] = ['"', '"']
                i = end
                continue
            if c in PS_SINGLE_QUOTES:
                stack.append(_Frame("sq"))
            elif c in PS_DOUBLE_QUOTES:
                stack.append(_Frame("dq"))
            elif c == "<" and nxt == "#":
                stack.append(_Frame("block"))
                code[i] = " "
                i += 1
            elif c == "#" or body.startswith("--%", i):  # a comment, or stop-parsing: the line is verbatim
                stack.append(_Frame("comment"))
                code[i] = " "
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
                code[i : i + 2] = "  "[: len(code[i : i + 2])]
                i += 2
                continue
            if c in quotes:
                if nxt and nxt in quotes:  # a doubled quote is one literal quote
                    code[i : i + 2] = "  "
                    i += 2
                    continue
                stack.pop()
                code[i] = c
            elif frame.kind == "dq" and c == "$" and nxt == "(":
                stack.append(_Frame("code"))
                i += 1
        elif frame.kind == "comment":
            if c in "\r\n":
                stack.pop()
        elif frame.kind == "block":
            if c == "#" and nxt == ">":
                stack.pop()
                code[i + 1] = " "
                i += 1
        elif frame.kind == "braced_variable":
            if c == "`":
                i += 2
                continue
            if c == "}":
                stack.pop()
        i += 1
    _check_powershell_statements("".join(code), starts, unsafe)
    return unsafe


def _powershell_statements(code: str) -> list[tuple[int, int]]:
    """Spans of top-level statements: split at `;` and line ends outside brackets, joining continued lines."""
    spans, start, depth, i, n = [], 0, 0, 0, len(code)
    while i < n:
        c = code[i]
        if c == "`":
            i += 2
            continue
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth = max(0, depth - 1)
        elif c in ";\n" and not depth:
            before, after = code[start:i].rstrip(), code[i + 1 :].lstrip()
            if not (c == "\n" and (before.endswith("|") or after.startswith("|"))):
                spans.append((start, i))
                start = i + 1
        i += 1
    spans.append((start, n))
    return spans


def _check_powershell_statements(code: str, starts: dict[int, re.Match[str]], unsafe: dict[int, str]) -> None:
    tainted_script = ""
    for s, e in _powershell_statements(code):
        text = code[s:e]
        evaluator = _PS_EVALUATORS.search(text)
        inside = [pos for pos in starts if s <= pos < e]
        if evaluator:
            why = f"its statement runs text or a program as code (`{evaluator.group(0).strip()}`)"
            for pos in inside:
                unsafe.setdefault(pos, why)
            if re.search(r"\$(?!(?:true|false|null)\b)[\w:{]", text, re.I):
                tainted_script = tainted_script or evaluator.group(0).strip()
        for pos in inside:
            if _PS_CODE_PARAMETER.search(code[s:pos]):
                unsafe.setdefault(pos, "it is the code (or script file) a -ScriptBlock/-FilePath/-Command runs")
            elif _PS_CALL.search(code[s:pos]):
                unsafe.setdefault(pos, "it follows the call operator `&` or dot-sourcing `.`, so it names what runs")
        if re.search(r"(?:^|[\s;|({}=])[&.]\s*\$", text):
            tainted_script = tainted_script or "& $variable"
    if tainted_script:
        for pos in starts:
            unsafe.setdefault(
                pos, f"the script runs a variable's text as code (`{tainted_script}`), which a value could reach"
            )


def _ends_line(body: str, i: int) -> bool:
    end = body.find("\n", i)
    return not body[i : len(body) if end < 0 else end].strip()


def _skip_here_string(body: str, i: int, family: str, starts: dict[int, re.Match[str]], unsafe: dict[int, str]) -> int:
    """Skip a here-string from the end of its `@'` line to the line that starts with a quote and `@`."""
    n = len(body)
    while i < n:
        end = body.find("\n", i)
        end = n if end < 0 else end
        for pos in starts:
            if i <= pos < end:
                unsafe.setdefault(pos, _IN_TEXT)
        i = end + 1
        if i + 1 < n and body[i] in family and body[i + 1] == "@":
            return i + 2
    return n
