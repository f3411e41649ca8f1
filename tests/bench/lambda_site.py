"""What a function's process can import in AWS, rebuilt from the venv for the cold-start benchmark.

In Lambda, `sys.path` holds the function's code, the layer (`/opt/python`: the packages of
`layers/flowpilot/requirements.txt` and `flowpilot`) and the runtime's own packages (boto3 and its
dependencies). The venv holds much more: sam-cli's and moto's dependencies, among them `awscrt` and
`pyOpenSSL`, which botocore and urllib3 import when they find them (~100 ms on `import boto3` alone,
which would flatter every ratio to it). `build()` makes a directory of symlinks to exactly the layer's
and the runtime's distributions (their dependency closure, no extras), which the child processes use as
their only site directory (`python -I -S`).

It also answers, for the built layer (`sam build`), whether a package would be importable from it:
`importable_from(path, "aws_xray_sdk")`.
"""

from __future__ import annotations

import importlib.metadata as md
import os
import subprocess
import sys
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
LAYER_REQUIREMENTS = ROOT / "layers" / "flowpilot" / "requirements.txt"
LAYER_PACKAGE = ROOT / "layers" / "flowpilot" / "flowpilot"
# What Lambda's Python runtime ships besides the standard library.
RUNTIME_DISTRIBUTIONS = ("boto3",)


def layer_requirements() -> list[Requirement]:
    lines = (line.split("#", 1)[0].strip() for line in LAYER_REQUIREMENTS.read_text().splitlines())
    return [Requirement(line) for line in lines if line]


def closure(roots: list[Requirement]) -> dict[str, md.Distribution]:
    """The installed distributions `roots` need, transitively, with only the extras they name."""
    found: dict[str, md.Distribution] = {}
    todo = [(r, frozenset(r.extras)) for r in roots]
    while todo:
        req, extras = todo.pop()
        key = req.name.lower().replace("_", "-")
        seen = key in found
        dist = found.get(key) or md.distribution(req.name)
        found[key] = dist
        if seen and not extras:
            continue
        for text in dist.requires or []:
            sub = Requirement(text)
            wanted = sub.marker is None or any(sub.marker.evaluate({"extra": e}) for e in (extras or {""}))
            if wanted:
                todo.append((sub, frozenset(sub.extras)))
    return found


def top_level_entries(dist: md.Distribution) -> set[str]:
    """The files and directories a distribution installed at the top of site-packages (`six.py`, `boto3`)."""
    names: set[str] = set()
    for file in dist.files or []:
        first = file.parts[0]
        if first.endswith((".dist-info", ".egg-info", ".pth")) or first in {"..", "__pycache__", "bin"}:
            continue
        if len(file.parts) > 1 or first.endswith((".py", ".so")):
            names.add(first)
    return names


def build(site: Path) -> Path:
    """Fill `site` with symlinks to the layer's and the runtime's packages and to `flowpilot`; returns it."""
    site.mkdir(parents=True, exist_ok=True)
    roots = layer_requirements() + [Requirement(name) for name in RUNTIME_DISTRIBUTIONS]
    for dist in closure(roots).values():
        base = Path(str(dist.locate_file("")))
        for name in top_level_entries(dist):
            source = base / name
            if source.exists() and not (site / name).exists():
                (site / name).symlink_to(source)
    if not (site / "flowpilot").exists():
        (site / "flowpilot").symlink_to(LAYER_PACKAGE)
    return site


def importable_from(path: Path, module: str, python: str = sys.executable) -> bool:
    """Whether `import module` finds it with `path` as the only site directory (no venv, no user site)."""
    code = "import importlib.util, sys; print(importlib.util.find_spec(sys.argv[1]) is not None)"
    env = {"PYTHONPATH": str(path), "PATH": os.environ.get("PATH", "")}
    result = subprocess.run(
        [python, "-S", "-s", "-c", code, module], env=env, capture_output=True, text=True, check=True, timeout=60
    )
    return result.stdout.strip() == "True"
