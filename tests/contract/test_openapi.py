"""The committed OpenAPI document is the one the resolvers generate (run `make openapi` after a change)."""

from __future__ import annotations

import json

from devstack import openapi, template


def test_committed_openapi_is_current() -> None:
    committed = (template.ROOT / "docs" / "openapi.json").read_text()
    assert committed == openapi.render(), "docs/openapi.json is stale: run `make openapi`"


def test_openapi_covers_exactly_the_template_routes() -> None:
    document = json.loads((template.ROOT / "docs" / "openapi.json").read_text())
    documented = {f"{method.upper()} {path}" for path, ops in document["paths"].items() for method in ops}
    assert documented == {r.route_key for r in template.routes()}
