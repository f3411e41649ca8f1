"""The secret scanner: finds credentials in free text (evidence, notes) and masks them.

It owns one list of detectors. `scan` reports what was found and where, with a masked excerpt only;
`redact` replaces each secret with a `[redacted <kind>]` marker. Detectors are tuned so ordinary
troubleshooting prose ("reset the user's password in AD", KB numbers, GUIDs, error codes, paths,
credential-free URLs) does not fire: a bare word like "password" is never enough, there must be an
assignment, a known token format, or a command that takes a secret.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

__all__ = ["Finding", "redact", "scan"]


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


def _assignment(kind: str, keys: str, *, check: Callable[[str], bool], separators: str = "[=:]") -> _Detector:
    """`key = value`, `key: "value"`, `"key": 'value'` where key matches `keys`; quotes are not the secret."""
    regex = (
        rf"""(?<![\w-])(?:{keys})["']?[ \t]*{separators}[ \t]*"""
        r"""(?:"(?P<dq>[^"\n]{1,200})"|'(?P<sq>[^'\n]{1,200})'|(?P<bare>[^\s"',;&]{1,200}))"""
    )
    compiled = re.compile(regex, re.IGNORECASE)

    def detect(text: str) -> Iterator[_Span]:
        for match in compiled.finditer(text):
            group = next(g for g in ("dq", "sq", "bare") if match.group(g) is not None)
            value = match.group(group)
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
_PASSWORD_KEYS = r"[a-z0-9_.]*(?:password|passwd|passphrase)|pwd|pass"

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
    _pattern("github_token", r"\b(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{36}\b"),
    _pattern("github_token", r"\bgithub_pat_[A-Za-z0-9_]{50,}\b"),
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
    _pattern(
        "url_credentials",
        r"\b[a-zA-Z][a-zA-Z0-9+.-]{1,20}://[^:/?#@\s]{1,100}:(?P<secret>[^@/?#\s]{1,200})@[^\s/@]+",
        check=lambda value: not _is_placeholder(value),
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
    _assignment(
        "generic_secret",
        r"[a-z0-9_.-]*(?:api[_-]?key|apikey|access[_-]?token|auth[_-]?token|refresh[_-]?token|token|"
        r"client[_-]?secret|secret[_-]?key|secret|private[_-]?key)",
        check=_looks_random,
    ),
)


def _spans(text: str) -> list[_Span]:
    """Every secret once: overlapping claims go to the more specific (earlier) detector."""
    accepted: list[_Span] = []
    for detector in _DETECTORS:
        for span in detector(text):
            if all(span.end <= other.start or span.start >= other.end for other in accepted):
                accepted.append(span)
    return sorted(accepted, key=lambda span: span.start)


def _mask(secret: str) -> str:
    """At most 4 leading characters and never more than a quarter of the secret."""
    return secret[: min(4, len(secret) // 4)] + "…"


def scan(text: str) -> list[Finding]:
    """The secrets in `text`, in reading order: kind, 1-based line and column, masked excerpt."""
    findings = []
    for span in _spans(text):
        line_start = text.rfind("\n", 0, span.start) + 1
        findings.append(
            Finding(
                kind=span.kind,
                line=text.count("\n", 0, span.start) + 1,
                column=span.start - line_start + 1,
                excerpt=_mask(text[span.start : span.end]),
            )
        )
    return findings


def redact(text: str) -> str:
    """`text` with every secret replaced by `[redacted <kind>]` (the surrounding words are kept)."""
    parts: list[str] = []
    position = 0
    for span in _spans(text):
        parts.append(text[position : span.start])
        parts.append(f"[redacted {span.kind.replace('_', ' ')}]")
        position = span.end
    parts.append(text[position:])
    return "".join(parts)
