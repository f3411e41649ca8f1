"""The shared layer as `sam build` built it: nothing in it may import the X-Ray SDK.

`python -m tests.bench.built_layer` (run after `sam build`) exits 1 when a forbidden package is importable
from `.aws-sam/build/<layer>/python`, 2 when there is no build to check.
"""

from __future__ import annotations

import sys
from pathlib import Path

from tests.bench import lambda_site

ROOT = Path(__file__).resolve().parents[2]
BUILD_DIR = ROOT / ".aws-sam" / "build"
# Powertools' Tracer brings it (~230 ms of import); Lambda's Tracing: Active needs no SDK in the code.
FORBIDDEN = ("aws_xray_sdk",)


def layer_dirs(build_dir: Path = BUILD_DIR) -> dict[str, Path]:
    """Each layer of the template that has a build, by logical id: the directory Lambda mounts at /opt/python."""
    from devstack import template

    return {
        logical_id: build_dir / logical_id / "python"
        for logical_id in template.resources("AWS::Serverless::LayerVersion")
        if (build_dir / logical_id / "python").is_dir()
    }


def forbidden_in(layer: Path) -> list[str]:
    """The forbidden packages importable from `layer` (empty when it is clean)."""
    return [name for name in FORBIDDEN if lambda_site.importable_from(layer, name)]


def main() -> int:
    layers = layer_dirs()
    if not layers:
        print(f"no built layer under {BUILD_DIR}: run sam build first", file=sys.stderr)
        return 2
    failed = False
    for logical_id, path in layers.items():
        found = forbidden_in(path)
        print(f"{logical_id}: {', '.join(found) + ' importable' if found else 'no ' + ', '.join(FORBIDDEN)}")
        failed = failed or bool(found)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
