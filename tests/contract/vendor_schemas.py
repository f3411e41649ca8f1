"""Field names of the PSA vendors' published request-body schemas (tests/fixtures/vendor_schemas.json).

Both Autotask and Halo silently drop body keys they do not know, so a misspelt key is a write that returns
200 and changes nothing. Tests hold every body a provider sends against the vendor's schema::

    from tests.contract import vendor_schemas

    assert vendor_schemas.unknown_fields("autotask", "TicketNote", body) == []
    assert vendor_schemas.unknown_fields("halopsa", "Action", actions[0]) == []

Vendors: ``autotask`` (entities ``Ticket``, ``TicketNote``) and ``halopsa`` (``Action``, ``Ticket``,
``TokenRequest``). Autotask matches keys case-insensitively (its REST API accepts PascalCase and camelCase);
Halo is compared exactly. Where the names come from and how to regenerate them: tests/fixtures/README.md.
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "vendor_schemas.json"


@functools.cache
def _document() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(FIXTURE.read_text(encoding="utf-8"))
    return document


def load() -> dict[str, Any]:
    """The whole fixture (a fresh copy: callers may mutate it)."""
    return copy.deepcopy(_document())


def _vendor(vendor: str) -> Mapping[str, Any]:
    document = _document()
    if vendor.startswith("_") or vendor not in document:
        known = sorted(k for k in document if not k.startswith("_"))
        raise KeyError(f"unknown vendor {vendor!r}; the fixture has {known}")
    section: Mapping[str, Any] = document[vendor]
    return section


def _entity(vendor: str, entity: str) -> Mapping[str, Any]:
    entities: Mapping[str, Any] = _vendor(vendor)["entities"]
    if entity not in entities:
        raise KeyError(f"unknown {vendor} entity {entity!r}; the fixture has {sorted(entities)}")
    found: Mapping[str, Any] = entities[entity]
    return found


def case_insensitive(vendor: str) -> bool:
    """Whether the vendor documents case-insensitive body keys (Autotask yes, Halo no)."""
    return bool(_vendor(vendor)["field_names_case_insensitive"])


def entity_fields(vendor: str, entity: str) -> frozenset[str]:
    """The property names the vendor's schema for `entity` defines, spelt as the schema spells them."""
    return frozenset(_entity(vendor, entity)["fields"])


@functools.cache
def _folded_fields(vendor: str, entity: str) -> frozenset[str]:
    return frozenset(name.casefold() for name in entity_fields(vendor, entity))


def unknown_fields(vendor: str, entity: str, body: Mapping[str, object]) -> list[str]:
    """The top-level keys of `body` that the vendor's schema for `entity` does not define, in body order.

    Keys are compared case-insensitively only for a vendor whose API documents that (Autotask); otherwise
    exactly. Nested objects are not inspected.
    """
    if case_insensitive(vendor):
        folded = _folded_fields(vendor, entity)
        return [key for key in body if not isinstance(key, str) or key.casefold() not in folded]
    known = entity_fields(vendor, entity)
    return [key for key in body if key not in known]
