"""The local stack's exceptions for its PSA simulators, which listen on loopback: the egress rules allow
loopback, and Autotask's zone lookup (a fixed Autotask URL in AWS) asks the simulator.

The layer applies `flowpilot.psa.egress.rules`, which in AWS are always the production rules (https to public
hosts, connections only to vetted addresses). The local stack, and the tests that talk to the simulator,
install `LoopbackAllowed` in their place: http and any host, and httpx's own transport. The URL's shape (no
credentials, query, control characters, bad port) is checked the same either way.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import flowpilot.psa.egress as egress

if TYPE_CHECKING:
    import httpx


class LoopbackAllowed(egress.EgressRules):
    def check_url(self, url: str) -> str:
        return egress.check_url(url, allow_loopback=True)

    def transport(self) -> httpx.BaseTransport | None:
        return None


def allow_loopback_psa() -> egress.EgressRules:
    """Install the loopback allowance; returns the rules it replaced (give them to `restore`)."""
    previous = egress.rules
    egress.rules = LoopbackAllowed()
    return previous


def restore(rules: egress.EgressRules) -> None:
    egress.rules = rules


@contextmanager
def loopback_psa() -> Iterator[None]:
    """The loopback allowance for the duration (the PSA connection pool follows the rules in force)."""
    previous = allow_loopback_psa()
    try:
        yield
    finally:
        restore(previous)


@contextmanager
def simulated_zone_lookup(sim: object) -> Iterator[None]:
    """Autotask's zone lookup pointed at `sim` when it is the Autotask simulator (else nothing changes)."""
    url = getattr(sim, "zone_lookup_url", None)
    if url is None:
        yield
        return
    previous = point_zone_lookup(url)
    try:
        yield
    finally:
        point_zone_lookup(previous)


def point_zone_lookup(url: str) -> str:
    """Install `url` as Autotask's zone lookup root; returns the one it replaced."""
    from flowpilot.psa import autotask

    previous: str = autotask.zone_lookup_url
    autotask.zone_lookup_url = url
    autotask.reset_caches()
    return previous
