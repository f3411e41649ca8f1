"""Placeholders where the shell evaluates a quoted value as code are refused; accepted templates run nothing.

POSIX templates are rendered with hostile values and run for real with bash and dash in an empty directory.
"""

from __future__ import annotations

import itertools
import shutil
import subprocess
from pathlib import Path

import pytest

from flowpilot import scripts
from flowpilot.errors import InvalidInput
from flowpilot.models import ScriptLanguage

PS = ScriptLanguage.powershell
SH = ScriptLanguage.posix
SHELLS = [path for path in (shutil.which("bash"), shutil.which("dash")) if path]

PAYLOADS = [
    "$(touch PWN)",
    "`touch PWN`",
    "a[$(touch PWN)]",
    "x[`touch PWN`]",
    "1; touch PWN",
    "a[$(touch PWN)] + 1",
    "PWN",
    "-v",
    "'; touch PWN; '",
]

# Each of these lets bash (or dash) evaluate a value as code: all are refused.
EVALUATING_POSIX = [
    "echo $(( {{v}} + 1 ))",
    'echo "$(( {{v}} ))"',
    "echo $[ {{v}} ]",
    "(( {{v}} ))",
    "for (( i = 0; i < {{v}}; i++ )); do :; done",
    "[[ 1 -eq {{v}} ]]",
    "if [[ $pct -gt {{v}} ]]; then echo hi; fi",
    "[[ {{v}} -lt 3 ]]",
    "[[ -v {{v}} ]]",
    "test -v {{v}}",
    "let x={{v}}",
    "let 'x = 1' {{v}}",
    "declare -i n; n={{v}}",
    "declare -i n={{v}}",
    "typeset -i n={{v}}",
    "f() { local -i n={{v}}; }; f",
    "export -i n={{v}}",
    "declare -n ref={{v}}; echo $ref",
    "arr[{{v}}]=1",
    "arr[$(echo {{v}})]=1",
    "declare {{v}}=1",
    "unset {{v}}",
    "read {{v}} <<< x",
    "printf -v {{v}} x",
    "mapfile {{v}} < /dev/null",
    "eval {{v}}",
    "eval echo {{v}}",
    'eval "$(printf %s {{v}})"',
    "source {{v}}",
    ". {{v}}",
    "trap {{v}} EXIT",
    "bash -c {{v}}",
    "sh -c {{v}}",
    "sh -c 'echo $1' sh {{v}}",
    "dash -c {{v}}",
    "zsh -c {{v}}",
    "ksh -c {{v}}",
    "sudo sh -c {{v}}",
    "sudo -u root bash -c {{v}}",
    "sudo -s {{v}}",
    "env -S {{v}}",
    "timeout 5 sh -c {{v}}",
    "su -c {{v}} root",
    "ssh host {{v}}",
    "ssh host systemctl restart {{v}}",
    "echo x | xargs {{v}}",
    "echo x | xargs -I{} sh -c {{v}}",
    "find . -exec sh -c {{v}} \\;",
    "awk {{v}}",
    "sed {{v}} /dev/null",
    "sed -e {{v}} /dev/null",
    "perl -e {{v}}",
    "python3 -c {{v}}",
    "watch {{v}}",
    "{{v}}",
    "{{v}} --version",
    "sudo {{v}}",
    "x={{v}}; echo $(( x + 1 ))",
    "x={{v}}; echo $(( $x + 1 ))",
    "x={{v}}; [[ $x -gt 1 ]]",
    "x={{v}}; y=$x; (( y ))",
    'x={{v}}; eval "$x"',
    "x={{v}}; echo ${!x}",
    "x={{v}}; s=abc; echo ${s:x}",
    "x={{v}}; echo ${arr[x]}",
    "x={{v}}; declare -i y; y=x",
    "x=$(printf %s {{v}}); echo $((x))",
    "for x in {{v}}; do echo $((x)); done",
    "set -- {{v}}; echo $(( $1 ))",
    "f() { echo $(( $1 )); }; f {{v}}",
    "printf '%s\\n' {{v}} | while read -r line; do echo $((line)); done",
    "compgen -W {{v}}",
]

# Ordinary templates: accepted, and they run nothing whatever the value.
SAFE_POSIX = [
    "printf '%s' {{v}}",
    "echo {{v}}",
    "systemctl restart {{v}} 2>/dev/null || true",
    "[[ -f {{v}} ]] || echo missing",
    "[[ $x == {{v}} ]] || echo differ",
    "[[ {{v}} =~ ^a ]] || echo no",
    "[[ -n {{v}} && $HOME == /root ]] || true",
    "test 1 -eq {{v}} 2>/dev/null || true",
    "[ 1 -eq {{v}} ] 2>/dev/null || true",
    "[ {{v}} -gt 1 ] 2>/dev/null || true",
    'x={{v}}; [ "$x" -gt 1 ] 2>/dev/null || true',
    'x={{v}}; printf "%d" "$x" 2>/dev/null || true',
    'x={{v}}; echo "$x" "${x:-d}" "${#x}"',
    "x={{v}}; [[ $x == a ]] || true",
    "case {{v}} in a) echo a;; *) echo other;; esac",
    "for i in 1 2 3; do echo {{v}} $((i * 2)); done",
    "[[ $EUID -ne 0 ]] || true; echo {{v}}",
    "sudo -n true 2>/dev/null; echo {{v}}",
    "timeout 5 printf '%s' {{v}}",
    "env LC_ALL=C printf '%s' {{v}}",
    'arr=({{v}} b); echo "${arr[@]}"',
    'arr[0]={{v}}; echo "${arr[0]}"',
    'readonly r={{v}}; echo "$r"',
    'f() { local y={{v}}; echo "$y"; }; f',
    "export E={{v}}; printf '%s' \"$E\"",
    "out=$(printf '%s' {{v}}); echo \"$out\"",
    "cat <<< {{v}}",
    "sed -n 1p {{v}} 2>/dev/null || true",
    "sed -e 's/a/b/' {{v}} 2>/dev/null || true",
    "find {{v}} -name x 2>/dev/null || true",
    "[ -d {{v}} ] || mkdir -p -- ./d 2>/dev/null; rmdir ./d 2>/dev/null || true",
]

EVALUATING_POWERSHELL = [
    "Invoke-Expression {{v}}",
    "iex {{v}}",
    "iex (Get-Content {{v}})",
    "{{v}} | Invoke-Expression",
    "iex (\n  'Get-Item ' + {{v}}\n)",
    "[scriptblock]::Create({{v}}).Invoke()",
    "[ScriptBlock]::Create('Get-Item ' + {{v}})",
    "powershell -Command {{v}}",
    "pwsh -c {{v}}",
    "powershell.exe -EncodedCommand {{v}}",
    "powershell {{v}}",
    "cmd /c {{v}}",
    "cmd.exe /c echo {{v}}",
    "Start-Process cmd.exe -ArgumentList {{v}}",
    "Start-Process -FilePath {{v}}",
    "Invoke-Command -ComputerName h -ScriptBlock {{v}}",
    "Invoke-Command -ComputerName h -FilePath {{v}}",
    "Add-Type -TypeDefinition {{v}}",
    "& {{v}}",
    ". {{v}}",
    "$ExecutionContext.InvokeCommand.InvokeScript({{v}})",
    "$c = {{v}}\nInvoke-Expression $c",
    "$c = {{v}}\n& $c",
    "Start-Job -ScriptBlock { Get-Item {{v}} }",
    "wmic process call create {{v}}",
    "schtasks /create /tr {{v}} /tn x",
]

SAFE_POWERSHELL = [
    "Restart-Service -Name {{v}}",
    "Get-Item -Path C:\\Users\\{{v}}",
    "Invoke-Command -ComputerName {{v}} -ScriptBlock { ipconfig /flushdns } -Tries {{w}}",
    "Invoke-Command -ComputerName h -ScriptBlock { param($s) Restart-Service $s } -ArgumentList {{v}}",
    "Invoke-Command -ComputerName h -ScriptBlock { Restart-Service -Name {{v}} }",
    "Set-LocalUser -Name {{v}} -Password (ConvertTo-SecureString {{w}})",
    "foreach ($s in {{v}}, {{w}}) { Restart-Service -Name $s }",
    "$n = {{v}}\nWrite-Output $n",
    "Write-Output 'Invoke-Expression is not run here' {{v}}",
    "Get-Process -Name {{v}} # iex in a comment",
]


def _render(body: str, language: ScriptLanguage, value: str) -> str:
    return scripts.render(body, language, {"v": value, "w": value})


def test_bash_and_dash_are_available() -> None:
    assert len(SHELLS) == 2


@pytest.mark.parametrize("body", EVALUATING_POSIX)
def test_posix_evaluating_contexts_are_refused(body: str) -> None:
    assert "v" in scripts.unsafe_placeholders(body, SH)
    with pytest.raises(InvalidInput) as caught:
        _render(body, SH, "1")
    assert caught.value.code == "unsafe_placeholder"
    assert "v" in caught.value.details["placeholders"]
    assert "v:" in caught.value.message  # the message says why, placeholder by placeholder


@pytest.mark.parametrize("body", EVALUATING_POWERSHELL)
def test_powershell_evaluating_contexts_are_refused(body: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        _render(body, PS, "x")
    assert caught.value.code == "unsafe_placeholder"
    assert "v" in caught.value.details["placeholders"]


@pytest.mark.parametrize("body", SAFE_POSIX)
def test_posix_ordinary_templates_are_accepted(body: str) -> None:
    assert scripts.unsafe_placeholders(body, SH) == []


@pytest.mark.parametrize("body", SAFE_POWERSHELL)
def test_powershell_ordinary_templates_are_accepted(body: str) -> None:
    assert scripts.unsafe_placeholders(body, PS) == []


def _runs_payload(shell: str, script: str, cwd: Path) -> bool:
    subprocess.run([shell, "-c", script], cwd=cwd, capture_output=True, timeout=10, check=False)
    created = (cwd / "PWN").exists()
    for leftover in cwd.iterdir():
        if leftover.is_dir():
            shutil.rmtree(leftover)
        else:
            leftover.unlink()
    return created


PROVEN_BY_BASH = [b for b in EVALUATING_POSIX[:22] if not b.startswith("export -i")]  # bash's export has no -i


@pytest.mark.parametrize("body", PROVEN_BY_BASH)
def test_the_refused_contexts_really_evaluate_a_quoted_value(body: str, tmp_path: Path) -> None:
    """Evidence that the refusals matter: quoting alone would have let bash run the payload."""
    manual = scripts.PLACEHOLDER.sub(lambda _: scripts.quote_posix("a[$(touch PWN)]"), body)
    if "-v" in body or body.startswith(("unset", "declare {{", "read", "printf -v", "mapfile")):
        manual = "a=(1 2); " + manual
    assert _runs_payload("bash", manual, tmp_path) or _runs_payload(
        "bash", scripts.PLACEHOLDER.sub(lambda _: scripts.quote_posix("$(touch PWN)"), body), tmp_path
    )


def test_no_accepted_posix_template_runs_a_hostile_value(tmp_path: Path) -> None:
    """Property: for every template x hostile value x shell, the renderer refuses it or running it runs nothing."""
    ran = []
    for body, value, shell in itertools.product(EVALUATING_POSIX + SAFE_POSIX, PAYLOADS, SHELLS):
        try:
            rendered = _render(body, SH, value)
        except InvalidInput as refused:
            assert refused.code == "unsafe_placeholder"
            assert body not in SAFE_POSIX
            continue
        assert body in SAFE_POSIX
        if _runs_payload(shell, rendered, tmp_path):
            ran.append((shell, rendered))
    assert ran == []


def test_every_safe_template_round_trips_its_value(tmp_path: Path) -> None:
    for shell in SHELLS:
        result = subprocess.run(
            [shell, "-c", _render("printf '<%s>' {{v}}", SH, "a[$(touch PWN)] `x` $((1))")],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=True,
        )
        assert result.stdout == "<a[$(touch PWN)] `x` $((1))>"
    assert list(tmp_path.iterdir()) == []
