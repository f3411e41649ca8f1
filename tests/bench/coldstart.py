"""Cold start: importing each function's handler module in a fresh interpreter, beside `import boto3` alone.

Each sample is a new `.venv/bin/python -I` process (isolated: no cwd or PYTHONPATH on sys.path, so only
the installed layer and site-packages are importable, as in Lambda) with the environment of
`devstack.aws.environment()`, so settings parse. The child loads `functions/<dir>/app.py` exactly as
`devstack.aws.load_function_module` does and prints the `time.perf_counter()` difference around it.
Targets run round-robin, each round starting one target later, so a busy moment of the machine is shared.
Bytecode caches are warm (a first untimed round writes them).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

BOTO3 = "boto3 alone"

_CHILD = """\
import importlib.util, sys, time
name, path = sys.argv[1], sys.argv[2]
sys.stderr.write("bench: timed import starts\\n")
sys.stderr.flush()
start = time.perf_counter()
if path == "-":
    import boto3
else:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
elapsed = time.perf_counter() - start
print(repr(elapsed))
"""


@dataclass(frozen=True)
class Target:
    label: str
    module_name: str
    path: str  # "-" = `import boto3`


@dataclass
class ColdStart:
    label: str
    samples_s: list[float]
    median_s: float
    min_s: float
    ratio_to_boto3: float | None = None
    importtime: dict[str, Any] | None = None


def targets() -> list[Target]:
    from devstack import template

    out = [Target(BOTO3, "boto3", "-")]
    for logical_id, function in template.functions().items():
        module_file = function.handler.rsplit(".", 1)[0]
        name = f"flowpilot_functions.{function.code_dir.name}.{module_file}"
        out.append(Target(logical_id, name, str(function.code_dir / f"{module_file}.py")))
    return out


def child_environment() -> dict[str, str]:
    from devstack import aws

    env = {k: v for k, v in os.environ.items() if k in {"PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TZ"}}
    env.update(aws.environment(identity_mode="jwt"))
    return env


def _run(python: str, target: Target, env: dict[str, str], *flags: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [python, "-I", *flags, "-c", _CHILD, target.module_name, target.path],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"importing {target.label} failed:\n{result.stderr[-3000:]}")
    return result


def measure(rounds: int, python: str = sys.executable) -> dict[str, ColdStart]:
    env = child_environment()
    all_targets = targets()
    for target in all_targets:  # warm the bytecode caches; not timed
        _run(python, target, env)
    samples: dict[str, list[float]] = defaultdict(list)
    for round_no in range(rounds):
        shift = round_no % len(all_targets)
        for target in all_targets[shift:] + all_targets[:shift]:
            samples[target.label].append(float(_run(python, target, env).stdout.strip().splitlines()[-1]))
    results = {
        label: ColdStart(label, values, statistics.median(values), min(values)) for label, values in samples.items()
    }
    baseline = results[BOTO3].median_s
    for result in results.values():
        result.ratio_to_boto3 = result.median_s / baseline
    return results


@dataclass(frozen=True)
class _Entry:
    depth: int
    name: str
    self_us: int
    cumulative_us: int

    @property
    def root(self) -> str:
        return self.name.split(".")[0]


def _parse_importtime(stderr: str) -> list[_Entry]:
    """The `-X importtime` lines logged after the child's marker (interpreter start-up is not timed)."""
    lines = stderr.splitlines()
    marker = next((i for i, line in enumerate(lines) if line.startswith("bench: timed import starts")), -1)
    entries = []
    for line in lines[marker + 1 :]:
        if not line.startswith("import time:") or "imported package" in line:
            continue
        own, cumulative, name_field = line[len("import time:") :].split("|")
        depth = (len(name_field) - len(name_field.lstrip()) - 1) // 2
        entries.append(_Entry(depth, name_field.strip(), int(own), int(cumulative)))
    return entries


def _chain(entries: list[_Entry], index: int) -> list[str]:
    """Who imported entries[index]: a module's line comes after its children's, at a smaller depth."""
    chain = [entries[index].name]
    depth = entries[index].depth
    for entry in entries[index + 1 :]:
        if entry.depth < depth:
            chain.append(entry.name)
            depth = entry.depth
            if depth == 0:
                break
    return chain


def _collapsed(chain: list[str]) -> list[str]:
    """The chain with each run of one package kept as its first (innermost) module, and the outermost."""
    out: list[str] = []
    for name in chain:
        if not out or name.split(".")[0] != out[-1].split(".")[0]:
            out.append(name)
    if chain[-1] not in out:
        out.append(chain[-1])
    return out


def import_profile(label: str, python: str = sys.executable, top: int = 8) -> dict[str, Any]:
    """Where one handler's import time goes, from `-X importtime` (indicative: the log itself costs time).

    `by_package_ms`: self time summed by top-level package, largest first (the standard library as one);
    `direct_imports_ms`: app.py's own imports with their cumulative time;
    `pulled_in_by`: for the heaviest third-party packages, the import chain that first brought them in.
    """
    target = next(t for t in targets() if t.label == label)
    entries = _parse_importtime(_run(python, target, child_environment(), "-X", "importtime").stderr)
    stdlib = sys.stdlib_module_names
    by_package: dict[str, int] = defaultdict(int)
    for entry in entries:
        by_package["(stdlib)" if entry.root in stdlib else entry.root] += entry.self_us
    ranked = sorted(by_package.items(), key=lambda kv: kv[1], reverse=True)
    direct = sorted((e for e in entries if e.depth == 0), key=lambda e: e.cumulative_us, reverse=True)[:top]
    pulled_in_by: dict[str, str] = {}
    for package, _ in ranked[:top]:
        if package in {"(stdlib)", "flowpilot"}:
            continue
        first = next(i for i, e in enumerate(entries) if e.root == package)
        pulled_in_by[package] = " <- ".join(_collapsed(_chain(entries, first)))
    return {
        "total_self_ms": round(sum(by_package.values()) / 1000, 1),
        "by_package_ms": {name: round(us / 1000, 1) for name, us in ranked},
        "direct_imports_ms": {e.name: round(e.cumulative_us / 1000, 1) for e in direct},
        "pulled_in_by": pulled_in_by,
    }
