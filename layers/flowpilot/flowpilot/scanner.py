"""The secret scanner: finds credentials in free text (evidence, notes) and masks them.

It owns one list of detectors. `scan` reports what was found and where, with a masked excerpt only;
`redact` replaces each secret with a `[redacted <kind>]` marker. Detectors are tuned so ordinary
troubleshooting prose ("reset the user's password in AD", KB numbers, GUIDs, error codes, paths,
credential-free URLs) does not fire: a bare word like "password" is never enough, there must be an
assignment, a known token format, a command that takes a secret, a value stated in plain words ("the
password is …", "reset bob to …", "WPA2 key: …") that looks like a password, or a table's password column.
Invisible characters (zero-width spaces, soft hyphens, BOMs) are removed before matching, so a token split
by one is still found; positions are mapped back, so line and column point into the original text.
Every pattern is bounded, so a scan is linear in the text (tests/bench/scanner_corpus.py times it).
"""

from __future__ import annotations

import itertools
import math
import re
import unicodedata
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from flowpilot.errors import InvalidInput

__all__ = ["Finding", "redact", "refuse_secrets", "scan"]


@dataclass(frozen=True)
class Finding:
    """One secret: its kind, where it starts (1-based line and column), and a masked excerpt."""

    kind: str
    line: int
    column: int
    excerpt: str


@dataclass(frozen=True)
class _Span:
    kind: str
    start: int
    end: int


_Detector = Callable[[str], Iterator[_Span]]

# Values that stand in for a secret rather than being one (masks, templates, variables, words).
_PLACEHOLDER_WORDS = frozenset(
    {
        "true", "false", "null", "none", "nil", "yes", "no", "redacted", "hidden", "masked", "removed",
        "expired", "reset", "required", "optional", "unknown", "blank", "empty", "set", "unset", "n/a",
        "na", "tbd", "your_password", "yourpassword", "password", "secret", "example",
    }
)  # fmt: skip
_PLACEHOLDER = re.compile(
    r"""^(?:
        (.)\1*                          # one repeated character: ****, xxxxxxxx, ......
      | <[^>]*>? | \[[^\]]*\]? | \{[^}]*\}? | \([^)]*\)?   # <password>, [redacted], {pwd}, (see vault)
      | \$\{?[A-Za-z_][\w:.]*\}?        # $pwd, ${PASSWORD}, $env:ADMIN_PASSWORD
      | %[A-Za-z_]\w*%                  # %PASSWORD%
      | (?:[A-Za-z]:)?[\\/].*           # a path: /home/jsmith, C:\Users, \\server\share
      | ~/.*
    )$""",
    re.VERBOSE,
)


def _is_placeholder(value: str) -> bool:
    return value.lower() in _PLACEHOLDER_WORDS or bool(_PLACEHOLDER.match(value))


def _looks_like_password(value: str, *, strict: bool) -> bool:
    """Whether an assigned value is plausibly a real password.

    `strict` is for the `Password: value` form, which also occurs in prose ("Password: expired"):
    there the value must carry a digit, a symbol, or an inner capital, as real passwords do.
    """
    if len(value) < 4 or _is_placeholder(value):
        return False
    if not strict:
        return True
    has_digit = any(c.isdigit() for c in value)
    has_symbol = any(not c.isalnum() for c in value)
    has_inner_capital = any(c.isupper() for c in value[1:])
    return len(value) >= 6 and (has_digit or has_symbol or has_inner_capital)


def _entropy(value: str) -> float:
    """Shannon entropy in bits per character."""
    counts = {c: value.count(c) for c in set(value)}
    return -sum(n / len(value) * math.log2(n / len(value)) for n in counts.values())


def _looks_random(value: str) -> bool:
    """Generic `token=` values: long, mixed letters and digits, high entropy (not words or ids)."""
    has_letter = any(c.isalpha() for c in value)
    has_digit = any(c.isdigit() for c in value)
    return len(value) >= 16 and has_letter and has_digit and _entropy(value) >= 3.5


def _looks_random_letters(value: str) -> bool:
    """A long key of letters only (some vendors' API keys): mixed case and very high entropy."""
    return (
        len(value) >= 24
        and value.isalpha()
        and any(c.isupper() for c in value)
        and any(c.islower() for c in value)
        and _entropy(value) >= 4.0
    )


def _pattern(kind: str, regex: str, *, check: Callable[[str], bool] | None = None) -> _Detector:
    """A detector from a regex; the named group `secret` (or the whole match) is the secret."""
    compiled = re.compile(regex)
    group: str | int = "secret" if "secret" in compiled.groupindex else 0

    def detect(text: str) -> Iterator[_Span]:
        for match in compiled.finditer(text):
            value = match.group(group)
            if value and (check is None or check(value)):
                yield _Span(kind, match.start(group), match.end(group))

    return detect


# `=` and `:` as written in HTML (`&#61;`, `&equals;`), escaped (`\=` in .properties files) or plain.
_EQUALS = r"(?:=|&#0{0,3}61;|&#[xX]0{0,2}3[dD];|&equals;|\\=)"
_COLON = r"(?::|&#0{0,3}58;|&#[xX]0{0,2}3[aA];|&colon;|\\:)"
# One line break (LF, CRLF, CR; U+2028/U+2029/NEL are read as LF) with the blanks around it.
_BREAK = r"[ \t]*(?:\r\n?|\n)[ \t]*"
# A value alone on its line: what may follow it before the line ends.
_LINE_END = re.compile(r"[ \t]*(?:[\r\n]|\Z)")
# A value that is the next key of a config dump ("password=" empty, then "username=admin"), not a secret.
_KEY_LIKE = re.compile(r"^[^\s:=]+(?::|=)")


def _alone_on_its_line(text: str, end: int) -> bool:
    return _LINE_END.match(text, end) is not None


def _next_line_value(value: str, *, strong: bool = False) -> bool:
    """A value found on the line after its label: it must look like a password, not a word or the next key."""
    if _KEY_LIKE.match(value):
        return False
    return _strong_password(value) if strong else _stated_password(value)


def _assignment(kind: str, keys: str, *, check: Callable[[str], bool], separators: str = "[=:]") -> _Detector:
    """`key = value`, `key: "value"`, `"key": 'value'`, `**key:** value` where key matches `keys`; quotes are not
    the secret. The separator may stand at the end of the key's line or start the value's (`password:` / `X`): such
    a value must then be alone on its line and look like a password (`_next_line_value`), as YAML and INI dumps put
    the next key there."""
    separator = {"=": _EQUALS, ":": _COLON}.get(separators, separators)
    regex = (
        rf"""(?:{keys})["']?(?:\*\*|__)?(?P<before>{_BREAK})?[ \t]*{separator}(?:\*\*|__)?(?P<after>{_BREAK})?[ \t]*"""
        r"""(?:"(?P<dq>[^"\n]{1,200})"|'(?P<sq>[^'\n]{1,200})'|(?P<bare>[^\s"',;&`]{1,200}))"""
    )
    compiled = re.compile(regex, re.IGNORECASE)

    def detect(text: str) -> Iterator[_Span]:
        for match in compiled.finditer(text):
            group = next(g for g in ("dq", "sq", "bare") if match.group(g) is not None)
            value = match.group(group)
            split = match.group("before") is not None or match.group("after") is not None
            if split and not (_alone_on_its_line(text, match.end()) and _next_line_value(value)):
                continue
            if check(value):
                yield _Span(kind, match.start(group), match.end(group))

    return detect


def _powershell_plaintext_secure_string(text: str) -> Iterator[_Span]:
    """`ConvertTo-SecureString "literal" -AsPlainText` (either argument order): the literal is a password."""
    for command in re.finditer(r"ConvertTo-SecureString\b[^\n|;]{0,300}", text, re.IGNORECASE):
        if "-asplaintext" not in command.group(0).lower():
            continue
        literal = re.search(r"""(["'])(?P<secret>[^"'\n]{1,200})\1""", command.group(0))
        if literal and not _is_placeholder(literal.group("secret")):
            yield _Span("password", command.start() + literal.start("secret"), command.start() + literal.end("secret"))


_PEM_BEGIN = re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----")
_PEM_END = re.compile(r"-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----")
# A key pasted without its END line: the rest of the BEGIN line, then base64 or `Header: value` lines.
_PEM_CUT_BODY = re.compile(r"[^\n]*(?:\n(?:[A-Za-z0-9+/=]+|[A-Za-z-]+:[^\n]*)(?=\n|\Z))*")


def _private_key(text: str) -> Iterator[_Span]:
    """A PEM/OpenSSH/PGP private key block through its END line, or through its body when cut off."""
    position = 0
    while match := _PEM_BEGIN.search(text, position):
        closing = _PEM_END.search(text, match.end())
        if closing:
            stop = closing.end()
        else:
            body = _PEM_CUT_BODY.match(text, match.end())
            stop = body.end() if body else match.end()
        yield _Span("private_key", match.start(), stop)
        position = stop
    for match in re.finditer(r"PuTTY-User-Key-File-\d+:[^\n]*(?:\n[^\n]+){0,80}", text):
        yield _Span("private_key", match.start(), match.end())


_TOKEN_END = r"(?![A-Za-z0-9_-])"
_B64 = r"[A-Za-z0-9+/]"
# A key is found by its last word ("...password", "DB_PASS"), never by a prefix run: `[a-z0-9_.]*password`
# retried at every dot of "a.a.a…" is quadratic (20 s on 20,000 characters).
_PASSWORD_KEYS = (
    r"(?:(?<=[a-z0-9_.])|(?<![\w.-]))(?:password|passwd|passphrase|passwort|kennwort)"
    r"|(?:(?<=[_.])|(?<![\w.-]))(?:pwd|pass)"
)
# Spelled out to slip past a scanner: "p a s s w o r d = …", "p.a.s.s.w.o.r.d: …" (a separate, guarded detector:
# one more branch in the keys above is tried at every character of every text).
_SPACED_PASSWORD_KEY = r"(?<![\w.-])p[ ._-]a[ ._-]s[ ._-]s[ ._-]w[ ._-]o[ ._-]r[ ._-]d(?![\w.-])"

# --- credentials written in plain words: sentences, commands, Wi-Fi keys and tables ------------------------

# What a secret is called in prose; the lookarounds keep it a whole word ("password-less", "bypass" are not).
_SECRET_NOUN = (
    r"(?<![\w-])(?:(?:wi-?fi|wlan|wpa[23]?(?:-psk)?|wep|wireless|network(?:[ ]security)?|pre-?shared)[ -]key"
    r"|key[ ]content|passphrase|passcode|password|passwd|passwort|kennwort|pwd|pw|p/w|pass|psk)(?![\w-])"
)
# Words between the noun and its value: "password [for the svc_backup account] is …"; no sentence end inside.
_FILLER_WORD = r"""[^\s:=|,;!?()"\u201c\u201d]{0,39}[^\s:=|,;!?()"\u201c\u201d.]"""
# What introduces the value: "is", "was changed to", ":", " - ", "->"; "to" alone is not enough ("sync to X").
_LINK = (
    r"(?:[ \t]*(?::|(?<![=!<>])=(?!=)|->|→|,[ \t]*(?:it|which|that)(?:'s|[ \t]+(?:is|was))\b|,"
    r"|(?<=\s)[-\u2013\u2014](?=\s)"
    r"|\b(?:is|was|are|were|ist|lautet|will[ \t]+be|should[ \t]+be|has[ \t]+been"
    r"|have[ \t]+been|had[ \t]+been|now|still|currently|temporarily"
    r"|(?:changed|reset|set|updated|switched|rotated)[ \t]+(?:back[ \t]+)?to)\b)){1,4}"
)
# The value: quoted (may hold spaces) or one bare token.
_VALUE = (
    r"""[ \t]*(?:(?P<open>["'\u201c\u2018`])(?P<quoted>[^"'\u201d\u2019`\n]{1,100})["'\u201d\u2019`]"""
    r"""|(?P<bare>[^\s"'\u201c\u201d\u2018\u2019`|][^\s"\u201c\u201d\u2018\u2019`|]{0,99}))"""
)
_CHANGE_VERB = r"\b(?:reset|resetting|changed?|changing|set|setting|updated?|updating|rotated?|rotating)\b"

# Tokens that follow "password is"/"key:" in prose without being a secret: addresses, dates, versions and
# standards (802.1X), sizes and durations, codes (0x…, KB…, AADSTS…), host and ticket names, cmdlets, URLs.
_NOT_A_SECRET = re.compile(
    r"""^(?:
        [\d:./-]*[:./-][\d:./-]*                    # 10.0.0.5, 2024-06-01, 16.12.4, 8080:80, 09:14
      | v?\d+(?:\.\d+)+[a-zA-Z]*                    # versions and standards: v1.2, 802.1X
      | \d+(?:[.,]\d+)?[a-z%]{1,10}                 # 12GB, 90days, 14chars, 5GHz, 100%
      | 0x[0-9a-f]+                                 # error codes
      | [A-Z]+[-_]?\d+                              # KB5034441, AADSTS50126, INC0012345, DC01, PC-042
      | \+[\d ()-]+                                 # phone numbers
      | (?:WPA\d?|WEP|AES|TKIP|CCMP|SAE)(?:\W.*)?   # Wi-Fi security types: WPA2-Personal, WPA3-SAE
      | (?:Get|Set|New|Remove|Add|Enable|Disable|Reset|Test|Invoke|Start|Stop|Restart|Update|Install|Import
         |Export|Clear|Connect|Search|Read|Write|Unlock|Grant|Revoke|ConvertTo|ConvertFrom)-\w+
      | [^@\s]+@[\w-]+(?:\.[\w-]+)+                 # e-mail addresses
      | [A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}   # host names: sql01.contoso.local
      | [a-z][a-z0-9+.-]*://.*                      # URLs
      | [a-z_]+(?:\.[a-z_]+)+                       # code: self.private_key, config.db_password
    )$""",
    re.VERBOSE,
)
# Words, hyphenated words and phrases in ordinary case ("correct", "MFA-protected", "in vault").
_WORDS = re.compile(r"^[A-Za-z]+(?:[-'\u2019. ]+[A-Za-z]+)*$")


def _is_word_like(value: str) -> bool:
    words = re.split(r"[-'\u2019. ]+", value)
    return bool(_WORDS.match(value)) and all(w.islower() or w.isupper() or w.istitle() for w in words)


def _stated_password(value: str) -> bool:
    """Whether a value stated in prose ("the password is …") is a password, not a word, code, date or name."""
    value = value.strip()
    if not _looks_like_password(value, strict=True):
        return False
    return not _is_word_like(value) and not _NOT_A_SECRET.match(value)


def _quoted_password(value: str) -> bool:
    """A quoted value: as `_stated_password`, or a passphrase of three or more words ("correct horse battery")."""
    return _stated_password(value) or (len(value.split()) >= 3 and len(value) >= 15 and _WORDS.match(value) is not None)


def _value_span(match: re.Match[str]) -> tuple[int, int, str, bool] | None:
    """(start, end, value, quoted) of the `_VALUE` in `match`; a bare value loses trailing sentence punctuation."""
    if match.groupdict().get("quoted") is not None:
        return match.start("quoted"), match.end("quoted"), match.group("quoted"), True
    bare = match.group("bare")
    value = bare.rstrip(".,;:)]}'\"")
    if not value:
        return None
    return match.start("bare"), match.start("bare") + len(value), value, False


def _stated(
    kind: str,
    regex: str,
    *,
    quoted_ok: Callable[[str], bool] = _quoted_password,
    bare_ok: Callable[[str], bool] = _stated_password,
    retry_group: str = "key",
) -> _Detector:
    """A detector for a value stated in prose: `regex` ends in `_VALUE`.

    A rejected value does not end the search: it resumes after `retry_group`, so "password reset … the new
    password is X" still reaches the second noun. Every pattern is bounded, so each resume costs O(1).
    """
    compiled = re.compile(regex, re.IGNORECASE)

    def detect(text: str) -> Iterator[_Span]:
        position = 0
        while match := compiled.search(text, position):
            found = _value_span(match)
            if found and (quoted_ok if found[3] else bare_ok)(found[2]):
                yield _Span(kind, found[0], found[1])
                position = match.end()
            else:
                position = max(match.end(retry_group), match.start() + 1)

    return detect


def _strong_password(value: str) -> bool:
    """For "reset bob to X", where nothing names a password: three of lower, upper, digit, symbol."""
    classes = (
        any(c.islower() for c in value),
        any(c.isupper() for c in value),
        any(c.isdigit() for c in value),
        any(not c.isalnum() for c in value),
    )
    return _stated_password(value) and sum(classes) >= 3


def _given_password(value: str) -> bool:
    """A value a command or config field takes as a password (the field says so): only placeholders are not."""
    value = value.strip("\"'")
    return len(value) >= 4 and not _is_placeholder(value)


def _only_with(hint: str, detector: _Detector) -> _Detector:
    """`detector`, skipped on texts without `hint` (any case): most notes hold no command, and a skip is cheap."""

    def detect(text: str) -> Iterator[_Span]:
        if hint in text.lower():
            yield from detector(text)

    return detect


def _only_matching(hint: re.Pattern[str], detector: _Detector) -> _Detector:
    """`detector`, skipped on texts where `hint` (a pattern with a literal start, so its search is fast) is not."""

    def detect(text: str) -> Iterator[_Span]:
        if hint.search(text):
            yield from detector(text)

    return detect


_TABLE_SECRET_COLUMN = re.compile(
    r"^(?:(?:new|temp|temporary|initial|default|current|old|admin|local admin|user|account|wi-?fi|wpa2?|vpn)[ ])?"
    r"(?:password|passwd|pwd|pw|pass|passphrase|passcode|psk|pre-?shared key|wi-?fi key|secret)s?$"
    r"|^(?:(?:neues|altes|initiales|tempor(?:ä|ae)res|wlan)[ -]?)?(?:passw(?:ort|örter)|kennw(?:ort|örter))$",
    re.IGNORECASE,
)
# A bare "Key" column holds secrets only in a Wi-Fi table (next to an SSID/network column), not "| Key | Value |".
_TABLE_KEY_COLUMN = re.compile(r"^(?:key|network key|security key)$", re.IGNORECASE)
_TABLE_WIFI_COLUMN = re.compile(r"^(?:ssid|network|network name|wi-?fi|wlan)$", re.IGNORECASE)
# Only a row naming one of these can be a header: other rows are split into cells only under a header.
_TABLE_HINT = re.compile(r"pass|pwd|pw|psk|secret|key|kennw", re.IGNORECASE)
_TABLE_RULE = re.compile(r"^[\s|:-]*-[\s|:-]*$")


# A line that is only a label ("New password for the user", "Wi-Fi key:", "**Password**") and the next line that is
# only its value. Without a link (":", "is", "-") the value must look strong: the label could head a paragraph.
_LABEL_LINE = re.compile(
    r"(?:^|(?<=\n))[ \t]*(?:[-*+>#][ \t]*){0,3}(?:\*\*|__)?(?:[A-Za-z'\u2019-]{1,20}[ \t]+){0,3}?"
    rf"(?P<key>{_SECRET_NOUN})(?:[ \t]+(?:for|of|on)[ \t]+[^\n:=.;!?|]{{1,50}}?)?(?:\*\*|__)?"
    r"(?P<link>[ \t]*(?::|=|->|→|[-\u2013\u2014]|\b(?:is|was|ist|lautet)\b))?(?:\*\*|__)?"
    rf"{_BREAK}(?:[-*+>][ \t]+)?(?P<sep>(?::|=|->|→)[ \t]*)?"
    r"""(?:(?P<open>["'\u201c\u2018`])(?P<quoted>[^"'\u201d\u2019`\n]{1,100})["'\u201d\u2019`]"""
    r"""|(?P<bare>[^\s"'\u201c\u201d\u2018\u2019`|]{1,100}))[ \t]*(?=[\r\n]|\Z)""",
    re.IGNORECASE,
)


# Every noun `_LABEL_LINE` reads contains one of these (a cheap test before a scan that tries every line start).
_LABEL_HINTS = ("pass", "pw", "pwd", "p/w", "psk", "key", "kennw")


def _label_line_then_value(text: str) -> Iterator[_Span]:
    """A label at the end of one line and its value alone on the next (also across U+2028/U+2029/NEL)."""
    if "\n" not in text and "\r" not in text:
        return
    lower = text.lower()
    if not any(hint in lower for hint in _LABEL_HINTS):
        return
    for match in _LABEL_LINE.finditer(text):
        found = _value_span(match)
        if found is None:
            continue
        start, end, value, _ = found
        linked = match.group("link") is not None or match.group("sep") is not None
        if _next_line_value(value, strong=not linked):
            yield _Span("password", start, end)


def _table_cells(line: str, offset: int) -> list[tuple[str, int]]:
    """The cells of a `|` table row: (stripped text, absolute offset of its first character)."""
    pipes = [i for i, c in enumerate(line) if c == "|"]
    bounds = [-1, *pipes, len(line)]
    cells = []
    for left, right in itertools.pairwise(bounds):
        raw = line[left + 1 : right]
        cells.append((raw.strip(), offset + left + 1 + (len(raw) - len(raw.lstrip()))))
    if line.lstrip().startswith("|"):
        cells = cells[1:]
    if line.rstrip().endswith("|"):
        cells = cells[:-1]
    return cells


def _table_password_column(text: str) -> Iterator[_Span]:
    """Markdown tables: every data cell under a Password/Pwd/Passphrase/PSK column (or a Wi-Fi table's Key)."""
    columns: list[int] = []
    offset = 0
    for line in text.split("\n"):
        start, offset = offset, offset + len(line) + 1
        if "|" not in line:
            columns = []
            continue
        if _TABLE_RULE.match(line):
            continue
        cells = _table_cells(line, start) if columns or _TABLE_HINT.search(line) else []
        names = [cell for cell, _ in cells]
        header = [i for i, name in enumerate(names) if _TABLE_SECRET_COLUMN.match(name)]
        if any(_TABLE_WIFI_COLUMN.match(name) for name in names):
            header += [i for i, name in enumerate(names) if _TABLE_KEY_COLUMN.match(name)]
        if header:
            columns = header
            continue
        for i in columns:
            if i < len(cells) and _stated_password(cells[i][0]):
                yield _Span("password", cells[i][1], cells[i][1] + len(cells[i][0]))


_PLAIN_WORDS_DETECTORS: tuple[_Detector, ...] = (
    # "the password for bob is X", "WPA2 key: X", "pw - X", "password was changed to X"
    _stated("password", rf"(?P<key>{_SECRET_NOUN})(?:[ \t]+{_FILLER_WORD}){{0,6}}?{_LINK}{_VALUE}"),
    # "used password X", "temporary password X", "username admin and password X"
    _stated(
        "password",
        r"\b(?:with|using|used|use|tried|entered|typed|and|temp|temporary|new|initial|default|one-time)"
        rf"[ \t]+(?:[\w'\u2019]+[ \t]+){{0,2}}?(?P<key>{_SECRET_NOUN})[ \t]+{_VALUE}",
    ),
    # "reset jsmith's password to X", "changed the local admin password for FW01 to X"
    _stated(
        "password",
        rf"{_CHANGE_VERB}[^\n.;]{{0,60}}?(?P<key>{_SECRET_NOUN})(?:[ \t]+(?:for|of|on)[ \t]+[^\n.;]{{1,50}}?)?"
        rf"[ \t]+(?:back[ \t]+)?to\b{_VALUE}",
    ),
    # "reset bob to X": no noun names the password, so the value must look strong
    _only_with(
        "reset",
        _stated(
            "password",
            r"\breset[ \t]+(?:user[ \t]+)?(?!(?:the|a|an|it|this|that|his|her|their|its|my|our|all|both|every)\b)"
            rf"(?P<key>[\w\\.@'\u2019-]{{2,60}})(?:[ \t]+account)?[ \t]+to\b{_VALUE}",
            bare_ok=_strong_password,
            quoted_ok=_strong_password,
        ),
    ),
    # "creds are svc_print / X", "login admin / X"
    _stated(
        "password",
        r"(?<![\w/-])(?P<key>creds?|credentials|login|logon|log-?in|u/p|user/pass(?:word)?|username/password)"
        r"(?![\w-])(?:[ \t]+(?:for|to|on|of)[ \t]+[^\n:=]{1,40}?)?(?:[ \t]*[:=]|[ \t]+(?:is|are|was|were))?"
        rf"""[ \t]*[^\s/:"']{{1,60}}[ \t]*/{_VALUE}""",
    ),
    # "admin/X", "root / X": a well-known account name, so the value must look strong
    _only_with(
        "/",
        _stated(
            "password",
            r"(?<![\w/-])(?P<key>admin|administrator|root|sa|manager|guest|support)[ \t]*/" + _VALUE,
            bare_ok=_strong_password,
            quoted_ok=_strong_password,
        ),
    ),
    # "a temp password of X"
    _only_with(
        " of",
        _stated("password", rf"(?P<key>{_SECRET_NOUN})[ \t]+of\b{_VALUE}"),
    ),
    # a list of fields: "SSID CAFE / key X", "user bob, pw X"
    _stated("password", rf"[/,;(][ \t]*(?P<key>{_SECRET_NOUN}|key)[ \t]+{_VALUE}"),
    # "SIM PIN is 7391", "door code: 4821"
    _stated(
        "pin",
        r"(?<![\w-])(?P<key>pin|puk|passcode|alarm[ \t]+code|door[ \t]+code|keypad[ \t]+code)(?:[ \t]+(?:code|number))?"
        r"(?:[ \t]+(?:for|on|of)[ \t]+[^\n:=]{1,40}?)?"
        r"(?:[ \t]*[:=]|[ \t]+(?:is|was|is[ \t]+now|now[ \t]+is|(?:set|changed|reset)[ \t]+to))"
        r"[ \t]*(?P<bare>\d{4,8})(?![\d.,:/-])"
        r"(?![ \t]*(?:digits?|characters?|chars?|numbers?|minutes?|attempts?|tries))",
        bare_ok=lambda _: True,
    ),
    # net user bob X /add
    _only_with(
        "net",
        _stated(
            "password",
            rf"""\bnet[ \t]+user[ \t]+(?P<key>"[^"\n]{{1,60}}"|[^\s"/*]{{1,60}})(?=[ \t]+[^\s/*]){_VALUE}""",
        ),
    ),
    # dsmod -pwd X, --password=X, -NewPassword X
    _pattern(
        "password",
        r"(?i:(?<![\w-])--?(?:pwd|passwd|pass|password|new-?password)(?:[ \t]+|=))"
        r"""["']?(?P<secret>[^\s"'($%][^\s"']{0,99})""",
        check=_stated_password,
    ),
    # psexec -u user -p X; sshpass -p 'X'
    _only_with(
        "-p",
        _pattern(
            "password",
            r"(?:(?<![\w-])-[uU][ \t]+\S{1,100}[ \t]+|\bsshpass[ \t]+)-p[ \t]*"
            r"[\"']?(?P<secret>[^\s\"'-][^\s\"']{0,99})",
            check=_stated_password,
        ),
    ),
    # mysql -u root -pX
    _only_with(
        "mysql",
        _pattern(
            "password",
            r"\b(?i:mysql)\w{0,10}\b[^\n|;]{0,120}?(?<![\w-])-p(?P<secret>[^\s\"'-][^\s]{0,99})",
            check=_given_password,
        ),
    ),
    # curl -u user:X, smbclient -U user%X
    _only_with(
        "-u",
        _pattern(
            "password",
            r"""(?<![\w-])(?:-u|--user)[ \t]+["']?[^\s:"'/]{1,60}:(?P<secret>[^\s"']{1,100})""",
            check=_given_password,
        ),
    ),
    _only_with(
        "%",
        _pattern(
            "password", r"""(?<![\w-])-U[ \t]+["']?[^\s%"']{1,60}%(?P<secret>[^\s"']{1,100})""", check=_given_password
        ),
    ),
    # echo "user:X" | chpasswd; echo X | passwd --stdin user
    _only_with(
        "chpasswd",
        _pattern(
            "password",
            r"""(?<![\w.-])[\w.-]{1,60}:(?P<secret>[^\s"':]{1,100})["']?[ \t]*\|[ \t]*(?:sudo[ \t]+)?chpasswd\b""",
            check=_given_password,
        ),
    ),
    _only_with(
        "--stdin",
        _pattern(
            "password",
            r"""\becho[ \t]+["']?(?P<secret>[^\s"'|]{1,100})["']?[ \t]*\|[ \t]*(?:sudo[ \t]+)?passwd[ \t]+--stdin\b""",
            check=_given_password,
        ),
    ),
    # xfreerdp /p:X
    _only_with(
        "/p:",
        _pattern("password", r"(?<![\w/])/p:(?P<secret>[^\s\"']\S{0,99})", check=_given_password),
    ),
    # a Wi-Fi profile exported with `netsh wlan export profile key=clear`
    _only_with(
        "keymaterial",
        _pattern("password", r"(?i:<keyMaterial>)(?P<secret>[^<\n]{1,100})(?i:</keyMaterial>)", check=_given_password),
    ),
    # netsh wlan set profileparameter name=Corp keyMaterial=X; netsh wlan set hostednetwork ssid=Guest key=X
    _only_with("keymaterial", _assignment("password", r"(?<![\w-])-?keyMaterial", check=_given_password)),
    _only_with(
        "netsh",
        _assignment(
            "password",
            r"\bnetsh\b[^\n|;&]{0,200}?[ \t]key",
            separators="=",
            check=lambda value: _given_password(value) and value.lower() != "clear",
        ),
    ),
    _only_with("|", _table_password_column),
    _label_line_then_value,
)

# Most specific first: when two detectors claim overlapping text, the earlier one names it.
_DETECTORS: tuple[_Detector, ...] = (
    _private_key,
    _pattern("anthropic_api_key", rf"\bsk-ant-(?:api|admin|oat)?\d*-?[A-Za-z0-9_-]{{32,}}{_TOKEN_END}"),
    _pattern("openai_api_key", rf"\bsk-(?!ant-)(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{{32,}}{_TOKEN_END}"),
    _pattern("aws_access_key_id", r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"),
    _pattern(
        "aws_secret_access_key",
        rf"(?i:aws_?secret_?access_?key|aws_?secret_?key|secret_?access_?key)[\"']?\s*[=:]\s*[\"']?"
        rf"(?P<secret>{_B64}{{40}})(?!{_B64})",
    ),
    # the name without "=" ("aws_secret_access_key wJal…", "AWS secret access key is wJal…"), or the secret key
    # pasted next to its key id ("AKIA… wJal…", a CSV "AKIA…,wJal…"): the value must then look random
    _only_matching(
        re.compile(r"(?i:secret)|AKIA|ASIA"),
        _pattern(
            "aws_secret_access_key",
            rf"(?i:aws[_ ]?secret[_ ]?access[_ ]?key|aws[_ ]?secret[_ ]?key|secret[_ ]?access[_ ]?key"
            rf"|\b(?-i:AKIA|ASIA)[A-Z0-9]{{16}}\b)(?:[\"' \t,;:|=]{{1,8}}|{_BREAK})(?i:(?:is|was)[ \t]+)?[\"']?"
            rf"(?P<secret>(?<!{_B64}){_B64}{{40}})(?!{_B64})",
            check=_looks_random,
        ),
    ),
    _pattern("github_token", r"\b(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{36}\b"),
    _pattern("github_token", r"\bgithub_pat_[A-Za-z0-9_]{50,}\b"),
    _only_with("glpat-", _pattern("gitlab_token", rf"\bglpat-[0-9A-Za-z_-]{{20,}}{_TOKEN_END}")),
    _only_with("npm_", _pattern("npm_token", r"\bnpm_[A-Za-z0-9]{36}\b")),
    _pattern("slack_token", rf"\bxox[abprs]-[A-Za-z0-9-]{{10,}}{_TOKEN_END}"),
    _pattern(
        "slack_webhook",
        r"https://hooks\.slack\.com/services/T[A-Z0-9]+/B[A-Z0-9]+/(?P<secret>[A-Za-z0-9]{16,})",
    ),
    _pattern("stripe_key", r"\b(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{20,}\b"),
    _pattern("google_api_key", rf"\bAIza[0-9A-Za-z_-]{{35}}{_TOKEN_END}"),
    _pattern("sendgrid_api_key", rf"\bSG\.[A-Za-z0-9_-]{{16,32}}\.[A-Za-z0-9_-]{{30,50}}{_TOKEN_END}"),
    _pattern("twilio_api_key", r"\bSK[0-9a-f]{32}\b"),
    _pattern(
        "twilio_auth_token",
        r"(?i:twilio[\w.-]{0,20}?(?:auth_?token|secret))[\"']?\s*[=:]\s*[\"']?(?P<secret>[0-9a-f]{32})\b",
    ),
    _pattern("azure_client_secret", r"(?<![\w~.-])[A-Za-z0-9_~.-]{3}\dQ~[A-Za-z0-9_~.-]{31,34}(?![\w~.-])"),
    _pattern("bitlocker_recovery_key", r"(?<![\d-])\d{6}(?:-\d{6}){7}(?![\d-])"),
    _pattern("jwt", rf"\beyJ[A-Za-z0-9_-]{{8,}}\.eyJ[A-Za-z0-9_-]{{8,}}\.[A-Za-z0-9_-]{{8,}}{_TOKEN_END}"),
    _pattern(
        "azure_storage_key",
        rf"(?i:AccountKey|SharedAccessKey)\s*=\s*(?P<secret>{_B64}{{20,}}=*)",
    ),
    _pattern("azure_sas_token", r"[?&;]sig=(?P<secret>[A-Za-z0-9%+/=]{20,})"),
    _pattern(
        "connection_string_password",
        r"(?i:\b(?:server|data source|driver|dsn|host|initial catalog|database|uid|user id|provider)\s*=)"
        r"[^\n]{0,300}?;\s*(?i:password|pwd)\s*=\s*"
        r"""(?P<secret>"[^"\n]{1,200}"|'[^'\n]{1,200}'|\{[^}\n]{1,200}\}|[^;\s]{1,200})""",
        check=lambda value: not _is_placeholder(value.strip("\"'{}")),
    ),
    # the password runs to the last "@" before the host, so it may hold "@", "#", "!" (P@ssw0rd#1)
    _pattern(
        "url_credentials",
        r"\b[a-zA-Z][a-zA-Z0-9+.-]{1,20}://[^:/?#@\s]{1,100}:(?P<secret>[^/?\s\"'<>`]{1,200})@[^\s/?#@\"'<>`]+",
        check=lambda value: not _is_placeholder(value),
    ),
    # an API key in a URL's query: ?key=…, &apikey=…, ?api_key=… (password= and token= are assignments below)
    _pattern(
        "generic_secret",
        r"(?i:[?&;](?:key|api[_-]?key|apikey|x-api-key|access[_-]?key|subscription-key|client[_-]?secret|secret|"
        r"access[_-]?token|auth)=)(?P<secret>[^\s&#\"'<>()\[\]`]{1,300})",
        check=lambda value: _looks_random(value) or _looks_random_letters(value),
    ),
    _pattern(
        "authorization_header",
        r"(?i:\bAuthorization[\"']?\s*[:=]\s*[\"']?(?:Bearer|Basic|Token|Bot|Digest)\s+)"
        r"(?P<secret>[A-Za-z0-9._~+/=-]{8,})",
        check=lambda value: not _is_placeholder(value),
    ),
    _pattern(
        "bearer_token",
        r"\bBearer\s+(?P<secret>[A-Za-z0-9._~+/-]{20,}=*)",
        check=_looks_random,
    ),
    _powershell_plaintext_secure_string,
    _pattern(
        "password",
        r"(?i:\bnet\s+use\b[^\n]{0,200}?/user:\S+\s+)(?P<secret>[^\s/]\S*)",
        check=lambda value: not _is_placeholder(value),
    ),
    _pattern(
        "password",
        r"(?i:/pass(?:word)?:)(?P<secret>[^\s\"']\S*)",
        check=lambda value: not _is_placeholder(value),
    ),
    _pattern(
        "password",
        r"(?i:/v\s+DefaultPassword\b[^\n]{0,100}?/d\s+)(?P<secret>\"[^\"\n]+\"|\S+)",
        check=lambda value: not _is_placeholder(value.strip('"')),
    ),
    _pattern(
        "password",
        r"""(?i:(?<![\w-])-[a-z]*password\s+)(?P<q>["'])(?P<secret>[^"'\n]{1,200})(?P=q)""",
        check=lambda value: not _is_placeholder(value),
    ),
    _assignment("password", _PASSWORD_KEYS, separators="=", check=lambda v: _looks_like_password(v, strict=False)),
    _assignment("password", _PASSWORD_KEYS, separators=":", check=lambda v: _looks_like_password(v, strict=True)),
    _only_matching(
        re.compile(r"p[ ._-]a[ ._-]s[ ._-]s[ ._-]w", re.IGNORECASE),
        _assignment("password", _SPACED_PASSWORD_KEY, check=lambda v: _looks_like_password(v, strict=True)),
    ),
    _assignment(
        "generic_secret",
        r"(?:(?<=[a-z0-9_.-])|(?<![\w.-]))(?:api[_-]?key|apikey|access[_-]?token|auth[_-]?token|refresh[_-]?token|token|"
        r"client[_-]?secret|secret[_-]?key|secret|private[_-]?key)",
        check=_looks_random,
    ),
    *_PLAIN_WORDS_DETECTORS,
)


# Characters that do not show but split a token when pasted from chat, PDFs or web pages ("ghp_…\u200b…").
_INVISIBLE = frozenset(
    "\u00ad\u034f\u061c\u180e\u200b\u200c\u200d\u200e\u200f\u202a\u202b\u202c\u202d\u202e"
    "\u2060\u2061\u2062\u2063\u2064\u2066\u2067\u2068\u2069\ufeff"
)
_INVISIBLE_RE = re.compile(f"[{''.join(sorted(_INVISIBLE))}]")
# Spaces that look like a space: matched as one (same length, so positions do not move).
_ODD_SPACES = re.compile("[\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000]")


# Line separators other than LF (U+2028, U+2029, NEL): read as LF (same length), so a label and its value on two
# "lines" are read as such; line and column are still counted in LF lines of the original text.
_LINE_SEPARATORS = re.compile("[\u2028\u2029\x85]")
# Letters that look like Latin ones (Cyrillic, Greek), read as Latin only inside the words that name a secret
# ("password" with a Cyrillic U+0430 for the "a"); a letter NFKC folds to one Latin letter (fullwidth U+FF50 "p")
# is read so too.
_CONFUSABLES = str.maketrans(
    "аеорсуххіїѕјԁԝкмнтвАЕОРСУХІЇЅЈԜКМНТВαοριυνκτΑΟΡΙΥΝΚΤΕΒΗΜΖ",
    "aeopcyxxiisjdwkmhtbAEOPCYXIISJWKMHTBaopiuvktAOPIYNKTEBHMZ",
)
_LABEL_WORDS = frozenset(
    {
        "password", "passwd", "passphrase", "passcode", "passwort", "kennwort", "pwd", "pw", "pass", "psk", "pin",
        "secret", "token", "key", "apikey", "keymaterial", "credentials", "creds", "login",
    }
)  # fmt: skip
# A word (letters only) holding a non-ASCII letter: the only words worth spelling in Latin letters.
_WORD = re.compile(r"(?<![^\W\d_])(?=[a-zA-Z]*[^\x00-\x7f])[^\W\d_]+")


def _latin(char: str) -> str:
    folded = unicodedata.normalize("NFKC", char)
    return folded if len(folded) == 1 and folded.isascii() else char.translate(_CONFUSABLES)


def _unmasked_labels(text: str) -> str:
    """`text` with label words written in look-alike letters spelled in Latin ones (same length)."""
    parts: list[str] = []
    position = 0
    for match in _WORD.finditer(text):
        word = match.group(0)
        if len(word) > 12:
            continue
        latin = "".join(_latin(c) for c in word)
        if latin.isascii() and latin.lower() in _LABEL_WORDS:
            parts += [text[position : match.start()], latin]
            position = match.end()
    return "".join(parts) + text[position:] if parts else text


def _normalised(text: str) -> tuple[str, list[int] | None]:
    """`text` as the detectors see it, and each of its characters' index in `text` (None: same positions)."""
    if text.isascii():
        return text, None
    text = _LINE_SEPARATORS.sub("\n", _ODD_SPACES.sub(" ", text))
    kept = None
    if _INVISIBLE_RE.search(text):
        kept = [i for i, c in enumerate(text) if c not in _INVISIBLE]
        text = "".join(text[i] for i in kept)
    return _unmasked_labels(text), kept


def _spans(text: str) -> list[tuple[_Span, str]]:
    """Every secret once, in reading order, with its span in `text` and its value without invisible characters.

    Overlapping claims go to the more specific (earlier) detector.
    """
    seen, kept = _normalised(text)
    accepted: list[_Span] = []
    for detector in _DETECTORS:
        for span in detector(seen):
            if all(span.end <= other.start or span.start >= other.end for other in accepted):
                accepted.append(span)
    found = []
    for span in sorted(accepted, key=lambda span: span.start):
        secret = seen[span.start : span.end]
        if kept is not None:
            span = _Span(span.kind, kept[span.start], kept[span.end - 1] + 1)
        found.append((span, secret))
    return found


def _mask(secret: str) -> str:
    """At most 4 leading characters and never more than a quarter of the secret."""
    return secret[: min(4, len(secret) // 4)] + "…"


def scan(text: str) -> list[Finding]:
    """The secrets in `text`, in reading order: kind, 1-based line and column, masked excerpt."""
    findings = []
    for span, secret in _spans(text):
        line_start = text.rfind("\n", 0, span.start) + 1
        findings.append(
            Finding(
                kind=span.kind,
                line=text.count("\n", 0, span.start) + 1,
                column=span.start - line_start + 1,
                excerpt=_mask(secret),
            )
        )
    return findings


def refuse_secrets(message: str, texts: Mapping[str, str]) -> None:
    """A 422 `sensitive_content` when any of `texts` holds what looks like a secret. Each warning has the kind,
    line, column and masked excerpt of a finding, and, when there is more than one text, which one (`in`)."""
    named = len(texts) > 1
    warnings = [
        {**({"in": where} if named else {}), "kind": f.kind, "line": f.line, "column": f.column, "excerpt": f.excerpt}
        for where, text in texts.items()
        for f in scan(text)
    ]
    if warnings:
        raise InvalidInput(message, code="sensitive_content", details={"warnings": warnings})


def redact(text: str) -> str:
    """`text` with every secret replaced by `[redacted <kind>]` (the surrounding words are kept)."""
    parts: list[str] = []
    position = 0
    for span, _ in _spans(text):
        parts.append(text[position : span.start])
        parts.append(f"[redacted {span.kind.replace('_', ' ')}]")
        position = span.end
    parts.append(text[position:])
    return "".join(parts)
