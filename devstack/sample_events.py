"""Writes events/: one complete HTTP API v2 event per route of template.yaml (for `sam local invoke -e`).

`python -m devstack.sample_events` regenerates them; a test checks they are current and run.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from devstack import template
from devstack.events import http_event

EVENTS_DIR = template.ROOT / "events"
SAMPLE_IDS = {
    "session_id": "ses_0sample000aaaaaaaaaa",
    "fix_id": "fix_0sample000bbbbbbbbbb",
    "writeback_id": "wb_0sample000cccccccccc",
}
_BODIES: dict[str, Any] = {
    "POST /ai-sessions": {
        "title": "VPN drops every 10 minutes",
        "problem": "User's VPN disconnects every 10 minutes.",
        "psa_ticket": {"provider": "connectwise", "ticket_id": "1001"},
    },
    "POST /ai-sessions/{session_id}/evidence": {
        "kind": "tried",
        "text": "Reinstalled the VPN client",
        "result": "Still drops",
    },
    "PUT /ai-sessions/{session_id}/psa-ticket": {"provider": "connectwise", "ticket_id": "1001"},
    "POST /ai-sessions/{session_id}/suggested-fixes": {
        "title": "Reset the network adapter",
        "description": "Disable and re-enable the VPN adapter.",
        "confidence_pct": 72,
        "ai_drafted_script": "Restart-NetAdapter -Name {{adapter}}",
        "ai_drafted_parameters": {"adapter": "VPN"},
    },
    "POST /ai-sessions/{session_id}/suggested-fixes/{fix_id}/decision": {"decision": "one_off"},
    "POST /ai-sessions/{session_id}/resolution-note/post": {
        "markdown": "Reinstalled the VPN client; the connection is stable.",
        "resolution_summary": "VPN fixed",
    },
    "POST /ai-sessions/{session_id}/escalation-package/post": {
        "markdown": "## Problem\nVPN drops.",
        "escalation_reason": "Needs network team",
    },
    "PUT /account-settings/preferences": {"cw_resolved_status_id": 5, "cw_escalated_status_id": 6},
    "PUT /account-settings/psa-connection": {
        "provider": "connectwise",
        "site": "na.myconnectwise.net",
        "company_id": "contoso",
        "public_key": "sample-public",
        "private_key": "sample-private",
        "client_id": "sample-client-id",
    },
}


def sample_body(route: template.Route) -> Any:
    return _BODIES.get(route.route_key)


def file_name(route: template.Route) -> str:
    slug = re.sub(r"[{}]", "", route.path).strip("/").replace("/", "_").replace("-", "_")
    return f"{route.function.removesuffix('Function').lower()}__{route.method.lower()}_{slug}.json"


def events() -> dict[str, dict[str, Any]]:
    out = {}
    for route in template.routes():
        path = route.path
        for name, value in SAMPLE_IDS.items():
            path = path.replace("{" + name + "}", value)
        event = http_event(
            route.method,
            path,
            body=sample_body(route),
            account_id="acct-sample",
            user_id="engineer-sample",
            stage="dev",
        )
        for volatile in ("requestId", "time", "timeEpoch"):
            event["requestContext"][volatile] = {
                "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
                "time": "25/Nov/2026:12:00:00 +0000",
                "timeEpoch": 1795608000000,
            }[volatile]
        out[file_name(route)] = event
    return out


def write(directory: Path = EVENTS_DIR) -> list[Path]:
    directory.mkdir(exist_ok=True)
    written = []
    for name, event in events().items():
        path = directory / name
        path.write_text(json.dumps(event, indent=2, sort_keys=True) + "\n")
        written.append(path)
    return written


if __name__ == "__main__":
    for path in write():
        print(path.relative_to(template.ROOT))
