"""Cold start: importing each function's handler module in a fresh interpreter, beside `import boto3` alone.

Measured as AWS runs it. Each sample is a new `.venv/bin/python -I -S` process whose only site directory
is `lambda_site.build()`: the layer's packages, `flowpilot` and the runtime's boto3, nothing else of the
venv. Its environment is what Lambda gives that function (`lambda_environment`): the template's
Globals and function `Environment`, Lambda's reserved variables, and those of `Tracing: Active`
(`_X_AMZN_TRACE_ID`, `AWS_XRAY_*`). The child loads `functions/<dir>/app.py` exactly as
`devstack.aws.load_function_module` does and prints the `time.perf_counter()` difference around it.
Targets run round-robin, each round starting one target later, so a busy moment of the machine is shared.
Bytecode caches are warm (a first untimed round writes them).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from tests.bench import lambda_site

BOTO3 = "boto3 alone"
FLOOR = "design floor"
FLOOR_PATH = Path(__file__).with_name("floor_handler.py")

_CHILD = """\
import importlib.util, sys, time
name, path, site = sys.argv[1], sys.argv[2], sys.argv[3]
sys.path.insert(0, site)
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
    env: dict[str, str] = field(default_factory=dict, compare=False)


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

    functions = template.functions()
    out = [
        Target(BOTO3, "boto3", "-", lambda_environment(None)),
        # Any function's environment: they differ only in names and table variables.
        Target(FLOOR, "flowpilot_bench.floor_handler", str(FLOOR_PATH), lambda_environment(next(iter(functions)))),
    ]
    for logical_id, function in functions.items():
        module_file = function.handler.rsplit(".", 1)[0]
        name = f"flowpilot_functions.{function.code_dir.name}.{module_file}"
        out.append(
            Target(logical_id, name, str(function.code_dir / f"{module_file}.py"), lambda_environment(logical_id))
        )
    return out


# A trace header as Lambda sets it for an invocation of a function with `Tracing: Active`.
TRACE_ID = "Root=1-6a1b2c3d-0123456789abcdef01234567;Parent=89abcdef01234567;Sampled=1;Lineage=1:abcd1234:0"


def lambda_environment(logical_id: str | None) -> dict[str, str]:
    """The environment Lambda gives a function with `Tracing: Active` (None: any function, for boto3 alone)."""
    from devstack import template

    name = template.physical_name(logical_id) if logical_id else "flowpilot-local-any"
    memory = str(template.load().get("Globals", {}).get("Function", {}).get("MemorySize", 512))
    env = {k: v for k, v in os.environ.items() if k in {"PATH", "HOME", "TMPDIR"}}
    env.update(
        {
            "LANG": "en_US.UTF-8",
            "TZ": ":UTC",
            "AWS_REGION": template.LOCAL_REGION,
            "AWS_DEFAULT_REGION": template.LOCAL_REGION,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_EXECUTION_ENV": "AWS_Lambda_python3.13",
            "AWS_LAMBDA_FUNCTION_NAME": name,
            "AWS_LAMBDA_FUNCTION_VERSION": "1",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": memory,
            "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{name}",
            "AWS_LAMBDA_LOG_STREAM_NAME": "2026/01/01/[1]0123456789abcdef0123456789abcdef",
            "AWS_LAMBDA_RUNTIME_API": "127.0.0.1:9001",
            "_HANDLER": "app.lambda_handler",
            # Tracing: Active
            "_X_AMZN_TRACE_ID": TRACE_ID,
            "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR",
            "AWS_XRAY_DAEMON_ADDRESS": "169.254.79.129:2000",
            "_AWS_XRAY_DAEMON_ADDRESS": "169.254.79.129",
            "_AWS_XRAY_DAEMON_PORT": "2000",
        }
    )
    if logical_id:
        env.update(template.functions()[logical_id].environment)
    return env


@cache
def site() -> str:
    """The child processes' only site directory (see lambda_site), built once per run."""
    return str(lambda_site.build(Path(tempfile.mkdtemp(prefix="flowpilot-lambda-site-"))))


def _run(python: str, target: Target, *flags: str) -> subprocess.CompletedProcess[str]:
    """The timed import of `target` in a fresh interpreter (`flags` go to the interpreter, e.g. -X importtime)."""
    return _run_child(python, _CHILD, target, flags=flags)


def round_robin(targets: list[Target], rounds: int) -> Iterator[Target]:
    """Every target once per round, each round starting one target later, so a busy moment is shared."""
    for round_no in range(rounds):
        shift = round_no % len(targets)
        yield from targets[shift:] + targets[:shift]


def measure(rounds: int, python: str = sys.executable) -> dict[str, ColdStart]:
    all_targets = targets()
    for target in all_targets:  # warm the bytecode caches; not timed
        _run(python, target)
    samples: dict[str, list[float]] = defaultdict(list)
    for target in round_robin(all_targets, rounds):
        samples[target.label].append(float(_run(python, target).stdout.strip().splitlines()[-1]))
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
    entries = _parse_importtime(_run(python, target, "-X", "importtime").stderr)
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


# --- stage attribution: what each 0.1x of a function's ratio is ------------------------------------

_LIST_CHILD = """\
import importlib.util, json, sys
name, path, site = sys.argv[1], sys.argv[2], sys.argv[3]
sys.path.insert(0, site)
before = set(sys.modules)
spec = importlib.util.spec_from_file_location(name, path)
module = importlib.util.module_from_spec(spec)
sys.modules[name] = module
spec.loader.exec_module(module)
print(json.dumps(sorted(set(sys.modules) - before - {name})))
"""

_STAGE_CHILD = """\
import importlib, importlib.util, json, sys, time
name, path, site, stages = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
sys.path.insert(0, site)
marks = []
start = time.perf_counter()
for modules in stages:
    for module_name in modules:
        if module_name not in sys.modules:
            importlib.import_module(module_name)
    marks.append(time.perf_counter() - start)
spec = importlib.util.spec_from_file_location(name, path)
module = importlib.util.module_from_spec(spec)
sys.modules[name] = module
spec.loader.exec_module(module)
marks.append(time.perf_counter() - start)
print(json.dumps(marks))
"""

PYDANTIC_ROOTS = frozenset({"pydantic", "pydantic_core", "annotated_types", "typing_extensions", "typing_inspection"})
RESOLVER = "aws_lambda_powertools.event_handler.api_gateway"
APP_STAGE = "the rest of flowpilot, and app.py"


def stage_plan(imported: set[str], floor: set[str]) -> list[tuple[str, list[str]]]:
    """The import stages, in order, of a handler that imports `imported`; the app module is the last stage.

    Each stage names the modules it imports; a module's own imports are charged to the first stage that
    needs them (the standard library included), so the stages' costs add up to the handler's import.
    The pydantic stage is the pydantic the design floor imports (`floor`: its modules); pydantic modules
    beyond it are charged to whoever asks for them (Powertools' validation asks for `pydantic.json_schema`).
    Stages the handler does not need are left out.
    """
    stdlib = sys.stdlib_module_names

    def root(name: str) -> str:
        return name.split(".")[0]

    def public(name: str) -> bool:  # importable by name: not a private alias such as `six.moves.x`
        return not any(part.startswith("_") and part != "__init__" for part in name.split(".")[1:])

    pydantic = sorted(m for m in imported & floor if root(m) in PYDANTIC_ROOTS and public(m))
    powertools_rest = sorted(
        m
        for m in imported
        if root(m) == "aws_lambda_powertools" and public(m) and m not in {"aws_lambda_powertools", RESOLVER}
    )
    other = sorted(
        {
            root(m)
            for m in imported
            if root(m) not in stdlib | PYDANTIC_ROOTS | {"boto3", "botocore", "aws_lambda_powertools", "flowpilot"}
            and not root(m).startswith("_")
        }
    )
    plan: list[tuple[str, list[str]]] = [
        ("boto3", ["boto3"]),
        ("pydantic (as the design floor uses it)", pydantic),
        ("Powertools package (Logger, Metrics)", ["aws_lambda_powertools"]),
        ("Powertools event handler (resolver)", [RESOLVER] if RESOLVER in imported else []),
        ("Powertools, the rest (OpenAPI validation, ...)", powertools_rest),
        ("other third-party packages", other),
        ("flowpilot.models (API and stored models)", ["flowpilot.models"] if "flowpilot.models" in imported else []),
    ]
    return [(label, modules) for label, modules in plan if modules]


@dataclass
class Attribution:
    label: str
    stages_ms: dict[str, float]  # stage -> median increment (ms)
    unit_ms: float  # the boto3 stage's median in the same processes: the unit of the ratios

    @property
    def ratios(self) -> dict[str, float]:
        return {stage: ms / self.unit_ms for stage, ms in self.stages_ms.items()}

    @property
    def total_ratio(self) -> float:
        return sum(self.stages_ms.values()) / self.unit_ms


def increments(plan_labels: list[str], samples: list[list[float]]) -> dict[str, float]:
    """Median cumulative time at each stage's end, as the increment over the previous stage (ms)."""
    medians = [statistics.median(run[i] for run in samples) * 1000 for i in range(len(plan_labels))]
    return {label: medians[i] - (medians[i - 1] if i else 0.0) for i, label in enumerate(plan_labels)}


def attribute(rounds: int, python: str = sys.executable) -> dict[str, Attribution]:
    """Each function's import split into the stages of `stage_plan`, timed in `rounds` fresh processes each."""
    every = targets()
    functions = [t for t in every if t.label not in {BOTO3, FLOOR}]
    floor = imported_modules(next(t for t in every if t.label == FLOOR), python)
    plans = {target.label: stage_plan(imported_modules(target, python), floor) for target in functions}
    samples: dict[str, list[list[float]]] = defaultdict(list)
    for target in round_robin(functions, rounds):
        stages = json.dumps([modules for _, modules in plans[target.label]])
        result = _run_child(python, _STAGE_CHILD, target, stages)
        samples[target.label].append(json.loads(result.stdout.strip().splitlines()[-1]))
    out = {}
    for target in functions:
        labels = [label for label, _ in plans[target.label]] + [APP_STAGE]
        stages_ms = increments(labels, samples[target.label])
        out[target.label] = Attribution(target.label, stages_ms, stages_ms["boto3"])
    return out


def imported_modules(target: Target, python: str = sys.executable) -> set[str]:
    """Every module importing `target` brings in, in a fresh process as AWS runs it (the interpreter's own aside)."""
    return set(json.loads(_run_child(python, _LIST_CHILD, target).stdout.strip().splitlines()[-1]))


def _run_child(
    python: str, child: str, target: Target, *extra: str, flags: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """Run `child` in a fresh `python -I -S` whose only site directory is `site()`, with `target`'s environment."""
    result = subprocess.run(
        [python, "-I", "-S", *flags, "-c", child, target.module_name, target.path, site(), *extra],
        env=target.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"importing {target.label} failed:\n{result.stderr[-3000:]}")
    return result
