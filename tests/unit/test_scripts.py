"""Script rendering: placeholders, quoting for PowerShell and POSIX sh, unsafe placements, secrets by name."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from flowpilot import scripts
from flowpilot.errors import InvalidInput
from flowpilot.models import ScriptLanguage

PS = ScriptLanguage.powershell
SH = ScriptLanguage.posix

HOSTILE = [
    "plain",
    "",
    "it's",
    "'",
    "''",
    "'; rm -rf ~; echo '",
    'say "hi"',
    '"; Remove-Item C:\\ -Recurse; "',
    "$(touch pwned-dollar)",
    "`touch pwned-backtick`",
    "a; touch pwned-semicolon",
    "a && touch pwned-and",
    "a || touch pwned-or",
    "a | tee pwned-pipe",
    "a\ntouch pwned-newline\n",
    "a\r\ntouch pwned-crlf",
    "$env:USERPROFILE",
    "${HOME} $HOME ~",
    "\u2018smart\u2019 \u201asingle\u201b",
    "\u201cdouble\u201d \u201e",
    "'\u2019; calc; \u2018'",
    "\\' \\\\",
    "{{other}}",
    "*?[a-z] > pwned-redirect",
    "-n",
    "ünïcødé ✓ 日本",
]


# --- placeholders ---


def test_placeholders_in_order_once_with_optional_spaces() -> None:
    body = "Do-It -A {{alpha}} -B {{ beta }} -C {{\tgamma }} -A2 {{alpha}} -X {{not a name}} {single}"
    assert scripts.placeholders(body) == ["alpha", "beta", "gamma"]


def test_render_replaces_whole_placeholder_with_quoted_literal() -> None:
    body = "Restart-Service -ComputerName {{host}} -Name {{ service }}"
    rendered = scripts.render(body, PS, {"host": "srv-01", "service": "Spooler"})
    assert rendered == "Restart-Service -ComputerName 'srv-01' -Name 'Spooler'"


def test_render_is_one_pass_values_are_not_rescanned() -> None:
    rendered = scripts.render("echo {{a}} {{b}}", SH, {"a": "{{b}}", "b": "x"})
    assert rendered == "echo '{{b}}' 'x'"


def test_missing_parameters_are_all_named() -> None:
    with pytest.raises(InvalidInput) as caught:
        scripts.render("x {{one}} {{two}} {{one}} {{three}}", PS, {"two": "2"})
    assert caught.value.code == "missing_parameters"
    assert caught.value.details == {"missing": ["one", "three"]}
    assert "one" in caught.value.message and "three" in caught.value.message


def test_nul_in_a_value_is_refused() -> None:
    with pytest.raises(InvalidInput) as caught:
        scripts.render("echo {{a}}", SH, {"a": "x\x00y"})
    assert caught.value.code == "invalid_parameter_value"


def test_extra_values_are_ignored() -> None:
    assert scripts.render("echo {{a}}", SH, {"a": "1", "unused": "2"}) == "echo '1'"


# --- PowerShell: exact literal forms (pwsh is not installed, so we check the grammar's rules) ---


@pytest.mark.parametrize(
    ("value", "literal"),
    [
        ("srv-01", "'srv-01'"),
        ("", "''"),
        ("it's", "'it''s'"),
        ("'; Stop-Computer; '", "'''; Stop-Computer; '''"),
        ('"; Stop-Computer; "', "'\"; Stop-Computer; \"'"),
        ("$(Stop-Computer)", "'$(Stop-Computer)'"),
        ("`$x `n", "'`$x `n'"),
        ("$env:USERPROFILE", "'$env:USERPROFILE'"),
        ("a; b && c | d", "'a; b && c | d'"),
        ("line1\nline2", "'line1\nline2'"),
        ("\u2018x\u2019", "'\u2018\u2018x\u2019\u2019'"),
        ("\u201a\u201b", "'\u201a\u201a\u201b\u201b'"),
        ("\u201cq\u201d", "'\u201cq\u201d'"),
    ],
)
def test_powershell_literal_form(value: str, literal: str) -> None:
    assert scripts.quote_powershell(value) == literal
    assert scripts.render("Write-Output {{v}}", PS, {"v": value}) == f"Write-Output {literal}"


def _read_powershell_verbatim_string(text: str) -> tuple[str, str]:
    """PowerShell's tokenizer for a '…' string: returns (value, what follows the closing quote)."""
    assert text[0] in scripts.PS_SINGLE_QUOTES
    value, i = [], 1
    while i < len(text):
        c = text[i]
        if c in scripts.PS_SINGLE_QUOTES:
            if i + 1 < len(text) and text[i + 1] in scripts.PS_SINGLE_QUOTES:
                value.append(text[i + 1])
                i += 2
                continue
            return "".join(value), text[i + 1 :]
        value.append(c)
        i += 1
    raise AssertionError("unterminated string")


@pytest.mark.parametrize("value", HOSTILE)
def test_powershell_literal_reads_back_as_the_value_and_ends_where_it_should(value: str) -> None:
    rendered = scripts.render("Write-Output {{v}} -Tail", PS, {"v": value})
    literal = rendered.removeprefix("Write-Output ")
    read, rest = _read_powershell_verbatim_string(literal)
    assert read == value
    assert rest == " -Tail"


# --- POSIX sh: executed for real ---


@pytest.mark.parametrize("value", HOSTILE)
def test_posix_value_round_trips_and_runs_nothing(value: str, tmp_path: Path) -> None:
    rendered = scripts.render("printf '%s' {{v}}; printf '|%s' {{ v }}", SH, {"v": value})
    result = subprocess.run(["/bin/sh", "-c", rendered], cwd=tmp_path, capture_output=True, check=True)
    assert result.stdout.decode() == f"{value}|{value}"  # bytes: no newline translation
    assert list(tmp_path.iterdir()) == []  # no `$(touch …)`, backtick, `;`, `&&`, `|` or redirect ran


def test_posix_each_value_stays_one_argument(tmp_path: Path) -> None:
    values = {"a": "one two", "b": "x' 'y", "c": "", "d": "*"}
    (tmp_path / "glob-bait").write_text("")
    rendered = scripts.render("printf '<%s>' {{a}} {{b}} {{c}} {{d}}", SH, values)
    result = subprocess.run(["/bin/sh", "-c", rendered], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert result.stdout == "<one two><x' 'y><><*>"


def test_posix_literal_form() -> None:
    assert scripts.quote_posix("it's") == "'it'\\''s'"
    assert scripts.quote_posix("$(id)") == "'$(id)'"


# --- placeholders where a quoted literal would not be inert are refused ---


@pytest.mark.parametrize(
    ("language", "body", "unsafe"),
    [
        (SH, "printf '%s' {{v}}", []),
        (SH, "echo $(printf '%s' {{v}})", []),
        (SH, "cat <<EOF\nliteral\nEOF\necho {{v}}", []),
        (SH, "echo '{{v}}'", ["v"]),
        (SH, 'echo "{{v}}"', ["v"]),
        (SH, 'echo "$(printf "a" "b") {{v}}"', ["v"]),
        (SH, "echo `echo {{v}}` {{w}}", ["v"]),
        (SH, "echo ok # {{v}}\necho {{w}}", ["v"]),
        (SH, "cat <<EOF\n{{v}}\nEOF\necho {{w}}", ["v"]),
        (SH, "cat <<-'END'\n\t{{v}}\n\tEND\necho {{w}}", ["v"]),
        (SH, "echo \\{{v}}", ["v"]),
        (SH, "echo ${x:-{{v}}}", ["v"]),
        (SH, "echo ${{v}}", ["v"]),
        (SH, 'echo "$(case a in a) echo "{{v}}";; esac)"', ["v"]),
        (PS, "Get-Item -Path C:\\Users\\{{v}}", []),
        (PS, "Get-Item 'it''s' {{v}}", []),
        (PS, "Write-Output '{{v}}'", ["v"]),
        (PS, 'Write-Output "{{v}}"', ["v"]),
        (PS, "Write-Output \u2018{{v}}\u2019 {{w}}", ["v"]),
        (PS, "Write-Output \u201c{{v}}\u201d {{w}}", ["v"]),
        (PS, 'Write-Output "$(Get-Date "a" "b") {{v}}" {{w}}', ["v"]),
        (PS, "Get-Item {{w}} # {{v}}", ["v"]),
        (PS, "<# {{v}}\n #> Get-Item {{w}}", ["v"]),
        (PS, '$s = @"\n{{v}}\n"@\nGet-Item {{w}}', ["v"]),
        (PS, "$s = @'\n{{v}}\n'@\nGet-Item {{w}}", ["v"]),
        (PS, "Get-Item `{{v}}", ["v"]),
        (PS, "Get-Item ${{v}} @{{w}}", ["v", "w"]),
        (PS, "icacls --% {{v}}\nGet-Item {{w}}", ["v"]),
    ],
)
def test_unsafe_placeholders(language: ScriptLanguage, body: str, unsafe: list[str]) -> None:
    assert scripts.unsafe_placeholders(body, language) == unsafe


def test_render_refuses_an_unsafe_placeholder() -> None:
    with pytest.raises(InvalidInput) as caught:
        scripts.render("Write-Output '{{v}}'", PS, {"v": "x"})
    assert caught.value.code == "unsafe_placeholder"
    assert caught.value.details == {"placeholders": ["v"]}


# --- secrets by name ---


@pytest.mark.parametrize(
    "name",
    [
        "password",
        "AdminPassword",
        "db_passwd",
        "client_secret",
        "api_token",
        "ApiKey",
        "api_key",
        "UserPIN",
        "pin",
        "wifi_psk",
        "Credential",
        "domain_cred",
        "privatekey",
        "passphrase",
        # run together or abbreviated, as an outside audit found them stored in plaintext
        "pass",
        "adminpass",
        "AdminPass",
        "userPass",
        "passcode",
        "wifikey",
        "sharedkey",
        "accesskey",
        "licensekey",
        "sshkey",
        "bearer",
        "jwt",
        "conn_str",
        "connectionString",
        "ntlm_hash",
        "wpa2",
        "bitlocker_recovery",
    ],
)
def test_secret_names(name: str) -> None:
    assert scripts.is_sensitive(name)


@pytest.mark.parametrize(
    "name",
    [
        *("host", "ComputerName", "keyboard_layout", "ping_target", "hotkey", "spinner", "bypass_proxy"),
        *("compass_heading", "passive_mode", "monkey_patch", "threshold", "SiteName", "arguments", "user"),
    ],
)
def test_ordinary_names(name: str) -> None:
    assert not scripts.is_sensitive(name)


def test_sensitive_names_include_marked_ones() -> None:
    assert scripts.sensitive_names(["host", "license", "token"], ["license"]) == ["license", "token"]
