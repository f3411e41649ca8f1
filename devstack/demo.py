"""`make demo`: the whole flow against a running `make dev`, printed as a readable transcript.

Session → evidence → a suggested fix run one-off → previews (the second from cache) → resolve post with a
verified status; an escalation on a second ticket; and a ticket whose board silently rejects the status
change, showing the 502, the workflow being fixed, and the re-post that resumes without a second note.

It runs any number of times against one stack: it sets up the simulator's faults and ticket statuses it
needs (through the simulator's control endpoint and CW's own API) and puts them back when it ends.
It finds the stack where `make dev` put it: `http://127.0.0.1:${API_PORT:-3000}`, or `--api`.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import textwrap
from typing import Any
from urllib.parse import urlsplit

import httpx

from devstack.cw_simulator import DEMO_CLIENT_ID, DEMO_COMPANY_ID, DEMO_PRIVATE_KEY, DEMO_PUBLIC_KEY

HEADERS = {"X-Dev-Account-Id": "acct-dev", "X-Dev-User-Id": "engineer-dev"}
SILENT_REJECT_TICKET = "1003"
OPEN_STATUS_ID = 1  # "New" on the Service Desk board


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


def default_api() -> str:
    return f"http://127.0.0.1:{os.environ.get('API_PORT') or 3000}"


class Simulator:
    """The ConnectWise simulator the demo account points at: its control endpoint and CW's own API."""

    def __init__(self, base_url: str):
        parts = urlsplit(base_url)
        self.control = httpx.Client(base_url=f"{parts.scheme}://{parts.netloc}", timeout=10)
        # The simulator's fake demo credentials (printed by `python -m devstack.cw_simulator`), as a CW admin.
        token = base64.b64encode(f"{DEMO_COMPANY_ID}+{DEMO_PUBLIC_KEY}:{DEMO_PRIVATE_KEY}".encode()).decode()
        headers = {"Authorization": f"Basic {token}", "clientId": DEMO_CLIENT_ID}
        self.cw = httpx.Client(base_url=base_url, headers=headers, timeout=10)

    def set_faults(self, ticket_id: str, **faults: Any) -> None:
        self.control.post(f"/__simulator/tickets/{ticket_id}/faults", json=faults).raise_for_status()

    def ticket(self, ticket_id: str) -> dict[str, Any]:
        return dict(self.control.get(f"/__simulator/tickets/{ticket_id}").json())

    def reopen(self, ticket_id: str) -> None:
        """Put the ticket back to New, as someone in CW would, so a re-run starts where the first did."""
        patch = [{"op": "replace", "path": "status/id", "value": OPEN_STATUS_ID}]
        self.cw.patch(f"/service/tickets/{ticket_id}", json=patch).raise_for_status()


def run(api: str) -> None:
    demo = Demo(api)
    print(f"FlowPilot Writeback demo against {api}")
    sim = Simulator(demo.call("GET", "/account-settings")["psa"]["base_url"])
    # Set up what step 6 needs whatever an earlier run left: the ticket open, its board ignoring changes.
    sim.set_faults(SILENT_REJECT_TICKET, ignore_status_change=False)
    sim.reopen(SILENT_REJECT_TICKET)
    sim.set_faults(SILENT_REJECT_TICKET, ignore_status_change=True)
    try:
        _story(demo, sim)
    finally:
        # Leave the ticket as the seed made it, so the next run (or a person trying it) sees the same.
        sim.set_faults(SILENT_REJECT_TICKET, ignore_status_change=False)
        sim.reopen(SILENT_REJECT_TICKET)
        sim.set_faults(SILENT_REJECT_TICKET, ignore_status_change=True)
    print("\nDemo complete.")


def _story(demo: Demo, sim: Simulator) -> None:

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
    note = sim.ticket("1002")["notes"][-1]
    print(
        f"      CW note flags: internalAnalysis={note['internalAnalysisFlag']} "
        f"detailDescription={note['detailDescriptionFlag']} resolution={note['resolutionFlag']}"
    )

    demo.say("Ticket 1003's board silently ignores status changes: CW answers 200 and changes nothing.")
    notes_before = len(sim.ticket(SILENT_REJECT_TICKET)["notes"])
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
    sim.set_faults(SILENT_REJECT_TICKET, ignore_status_change=False)
    resumed = demo.call(
        "POST",
        f"/ai-sessions/{rid}/resolution-note/post",
        {"markdown": "Restarted the print spooler; the printer is back online."},
    )
    demo.show(resumed, ("outcome", "external_id", "verified_status_name"))
    added = len(sim.ticket(SILENT_REJECT_TICKET)["notes"]) - notes_before
    print(f"      notes this session added to ticket 1003: {added} (the resume reused note {resumed['external_id']})")
    if added != 1:
        raise SystemExit(f"expected exactly one new note on ticket 1003, found {added}")

    demo.say("The escalation queue and the write-back ledger.")
    queue = demo.call("GET", "/ai-sessions?status=escalated&limit=5")
    for item in queue["items"]:
        print(f"      escalated: {item['title']} — {item['escalation_reason']}")
    ledger = demo.call("GET", f"/ai-sessions/{sid}/writebacks/{posted['writeback_id']}")
    demo.show(ledger, ("state", "outcome", "note_id", "target_status_id", "verified_status_id", "drift", "created_by"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--api", default=default_api(), help="the stack's URL (default: from API_PORT, else 3000)")
    args = parser.parse_args()
    try:
        run(args.api)
    except httpx.ConnectError:
        sys.exit(
            f"Nothing answers at {args.api}: start the local stack first with `make dev` "
            "(if it runs on another port, give the same API_PORT to both: API_PORT=3100 make dev / make demo)."
        )


if __name__ == "__main__":
    main()
