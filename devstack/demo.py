"""`make demo`: the whole flow against a running `make dev`, printed as a readable transcript.

Session → evidence → a suggested fix run one-off → previews (the second from cache) → resolve post with a
verified status; an escalation on a second ticket; and a ticket whose board silently rejects the status
change, showing the 502, the workflow being fixed, and the re-post that resumes without a second note.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from typing import Any
from urllib.parse import urlsplit

import httpx

HEADERS = {"X-Dev-Account-Id": "acct-dev", "X-Dev-User-Id": "engineer-dev"}


class Demo:
    def __init__(self, api: str):
        self.http = httpx.Client(base_url=api, headers=HEADERS, timeout=60)
        self.step = 0

    def say(self, text: str) -> None:
        self.step += 1
        print(f"\n{self.step:>2}. {text}")

    def call(self, method: str, path: str, body: Any = None, expect: tuple[int, ...] = (200, 201)) -> Any:
        response = self.http.request(method, path, json=body)
        print(f"    {method} {path} -> {response.status_code}")
        if response.status_code not in expect:
            print(textwrap.indent(response.text, "    ! "))
            raise SystemExit(f"unexpected {response.status_code} from {method} {path}")
        return response.json() if response.content else None

    def show(self, value: Any, keys: tuple[str, ...] | None = None) -> None:
        if keys and isinstance(value, dict):
            value = {k: value.get(k) for k in keys}
        print(textwrap.indent(json.dumps(value, indent=2), "      "))

    def session(self, title: str, problem: str, ticket_id: str) -> str:
        body = {"title": title, "problem": problem, "psa_ticket": {"provider": "connectwise", "ticket_id": ticket_id}}
        return str(self.call("POST", "/ai-sessions", body)["id"])

    def evidence(self, session_id: str, kind: str, text: str, result: str | None = None) -> None:
        self.call("POST", f"/ai-sessions/{session_id}/evidence", {"kind": kind, "text": text, "result": result})


def simulator_url(demo: Demo) -> str:
    base = demo.call("GET", "/account-settings")["psa"]["base_url"]
    parts = urlsplit(base)
    return f"{parts.scheme}://{parts.netloc}"


def run(api: str) -> None:
    demo = Demo(api)
    print(f"FlowPilot Writeback demo against {api}")
    sim = httpx.Client(base_url=simulator_url(demo), timeout=10)
    sim.post("/__simulator/tickets/1003/faults", json={"ignore_status_change": True}).raise_for_status()

    demo.say("An engineer opens a session on ConnectWise ticket 1001 and records what they find.")
    sid = demo.session("VPN drops every 10 minutes", "Remote user's VPN disconnects every ~10 minutes.", "1001")
    demo.evidence(sid, "confirmed", "Drops coincide with the adapter's power-saving timer")
    demo.evidence(sid, "tried", "Reinstalled the VPN client", "Still drops")
    demo.evidence(sid, "hypothesis", "NIC power management suspends the adapter")

    demo.say("The AI suggests a fix; the engineer runs it one-off (parameters safely quoted).")
    fix = demo.call(
        "POST",
        f"/ai-sessions/{sid}/suggested-fixes",
        {
            "title": "Disable NIC power saving",
            "description": "Stop Windows from suspending the VPN adapter.",
            "confidence_pct": 80,
            "ai_drafted_script": "Disable-NetAdapterPowerManagement -Name {{adapter}}",
            "ai_drafted_parameters": {"adapter": "VPN 'Corp'"},
        },
    )
    decided = demo.call("POST", f"/ai-sessions/{sid}/suggested-fixes/{fix['id']}/decision", {"decision": "one_off"})
    print(f"      rendered_script: {decided.get('rendered_script')}")
    demo.evidence(sid, "tried", "Disabled NIC power saving on the VPN adapter", "Stable for 30 minutes")

    demo.say("Preview the customer-visible resolution note, twice: the second comes from the cache.")
    first = demo.call("POST", f"/ai-sessions/{sid}/resolution-note/preview")
    second = demo.call("POST", f"/ai-sessions/{sid}/resolution-note/preview")
    print(
        f"      from_cache: {first['from_cache']} then {second['from_cache']} (state_version {second['state_version']})"
    )
    print(textwrap.indent(first["markdown"], "      | "))

    demo.say("Post it: note → status change → verified by re-fetching the ticket.")
    posted = demo.call("POST", f"/ai-sessions/{sid}/resolution-note/post", {"markdown": first["markdown"]})
    demo.show(posted, ("outcome", "session_status", "external_id", "verified_status_id", "verified_status_name"))

    demo.say("A second session escalates ticket 1002 with the internal five-section package.")
    eid = demo.session("Mailbox migration stuck", "Exchange Online move request stalled at 95%.", "1002")
    demo.evidence(eid, "confirmed", "Move request status is StalledDueToTarget_MdbAvailability")
    demo.evidence(eid, "tried", "Resumed the move request", "Stalled again after 10 minutes")
    demo.evidence(eid, "next_step", "Open a Microsoft support case for the target database")
    package = demo.call("POST", f"/ai-sessions/{eid}/escalation-package/preview")
    print(textwrap.indent(package["markdown"], "      | "))
    escalated = demo.call(
        "POST",
        f"/ai-sessions/{eid}/escalation-package/post",
        {"markdown": package["markdown"], "escalation_reason": "Needs Microsoft support case"},
    )
    demo.show(escalated, ("outcome", "session_status", "external_id", "verified_status_name"))
    note = sim.get("/__simulator/tickets/1002").json()["notes"][-1]
    print(
        f"      CW note flags: internalAnalysis={note['internalAnalysisFlag']} "
        f"detailDescription={note['detailDescriptionFlag']} resolution={note['resolutionFlag']}"
    )

    demo.say("Ticket 1003's board silently ignores status changes: CW answers 200 and changes nothing.")
    rid = demo.session("Printer offline on 3rd floor", "Floor printer shows offline for everyone.", "1003")
    demo.evidence(rid, "tried", "Restarted the print spooler on the print server", "Printer back online")
    failed = demo.call(
        "POST",
        f"/ai-sessions/{rid}/resolution-note/post",
        {"markdown": "Restarted the print spooler; the printer is back online."},
        expect=(502,),
    )
    demo.show(failed["error"])

    demo.say("An admin fixes the board's workflow in CW; the engineer posts again. It resumes at the status change.")
    sim.post("/__simulator/tickets/1003/faults", json={"ignore_status_change": False}).raise_for_status()
    resumed = demo.call(
        "POST",
        f"/ai-sessions/{rid}/resolution-note/post",
        {"markdown": "Restarted the print spooler; the printer is back online."},
    )
    demo.show(resumed, ("outcome", "external_id", "verified_status_name"))
    notes = sim.get("/__simulator/tickets/1003").json()["notes"]
    print(f"      notes on ticket 1003: {len(notes)} (the resume reused note {resumed['external_id']})")

    demo.say("The escalation queue and the write-back ledger.")
    queue = demo.call("GET", "/ai-sessions?status=escalated&limit=5")
    for item in queue["items"]:
        print(f"      escalated: {item['title']} — {item['escalation_reason']}")
    ledger = demo.call("GET", f"/ai-sessions/{sid}/writebacks/{posted['writeback_id']}")
    demo.show(ledger, ("state", "outcome", "note_id", "target_status_id", "verified_status_id", "drift", "created_by"))
    print("\nDemo complete.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--api", default="http://127.0.0.1:3000")
    args = parser.parse_args()
    try:
        run(args.api)
    except httpx.ConnectError:
        sys.exit(f"Nothing answers at {args.api}: start the local stack first with `make dev`.")


if __name__ == "__main__":
    main()
