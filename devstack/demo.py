"""`make demo`: the whole flow against a running `make dev`, printed as a readable transcript.

Session → evidence → a suggested fix run one-off → previews (the second from cache) → resolve post with a
verified status; an escalation on a second ticket; and a ticket whose PSA silently rejects the status
change, showing the 502, the workflow being fixed, and the re-post that resumes without a second note.

`PSA=autotask` or `PSA=halopsa` (`make demo PSA=...`, or `--psa`) runs the same transcript on that PSA's demo
account (acct-autotask, acct-halo); the default is ConnectWise (acct-dev).

It runs any number of times against one stack: it sets up the simulator's faults and ticket statuses it
needs (through the simulator's control endpoint) and puts them back when it ends.
It finds the stack where `make dev` put it: `http://127.0.0.1:${API_PORT:-3000}`, or `--api`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
from typing import Any

import httpx

from devstack.demo_account import DEMO_ACCOUNTS, NAMES

SILENT_REJECT_TICKET = "1003"
OPEN_STATUS_ID = 1  # "New" in every simulator's seed
ALIASES = {"cw": "connectwise", "halo": "halopsa", "at": "autotask"}
# Each PSA's own note visibility fields, shown beside the neutral view.
VISIBILITY_FIELDS = {
    "connectwise": ("internalAnalysisFlag", "detailDescriptionFlag", "resolutionFlag", "issueFlag"),
    "autotask": ("publish", "noteType"),
    "halopsa": ("hiddenfromuser", "sendemail", "outcome_id"),
}


class Demo:
    def __init__(self, api: str, provider: str):
        headers = {"X-Dev-Account-Id": DEMO_ACCOUNTS[provider][0], "X-Dev-User-Id": "engineer-dev"}
        self.http = httpx.Client(base_url=api, headers=headers, timeout=60)
        self.provider = provider
        self.psa = NAMES[provider]
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
        body = {"title": title, "problem": problem, "psa_ticket": {"provider": self.provider, "ticket_id": ticket_id}}
        return str(self.call("POST", "/ai-sessions", body)["id"])

    def evidence(self, session_id: str, kind: str, text: str, result: str | None = None) -> None:
        self.call("POST", f"/ai-sessions/{session_id}/evidence", {"kind": kind, "text": text, "result": result})


def default_api() -> str:
    return f"http://127.0.0.1:{os.environ.get('API_PORT') or 3000}"


class Simulator:
    """The demo account's PSA simulator, through its control endpoint (what an admin does in the PSA's UI)."""

    def __init__(self, site_url: str):
        self.control = httpx.Client(base_url=site_url, timeout=10)

    def set_faults(self, ticket_id: str, **faults: Any) -> None:
        self.control.post(f"/__simulator/tickets/{ticket_id}/faults", json=faults).raise_for_status()

    def ticket(self, ticket_id: str) -> dict[str, Any]:
        return dict(self.control.get(f"/__simulator/tickets/{ticket_id}").json())

    def reopen(self, ticket_id: str, status_id: int) -> None:
        """Put the ticket back to its first status, as someone in the PSA would, so a re-run starts the same."""
        self.control.post(f"/__simulator/tickets/{ticket_id}/status", json={"status_id": status_id}).raise_for_status()


def run(api: str, provider: str) -> None:
    demo = Demo(api, provider)
    print(f"FlowPilot Writeback demo against {api}, on {demo.psa} (account {DEMO_ACCOUNTS[provider][0]})")
    about = demo.call("GET", "/__devstack")
    if provider not in about:
        raise SystemExit(f"this stack has no {demo.psa} simulator")
    sim = Simulator(str(about[provider]))
    # Set up what the silent-reject story needs whatever an earlier run left: the ticket open, changes ignored.
    sim.set_faults(SILENT_REJECT_TICKET, ignore_status_change=False)
    sim.reopen(SILENT_REJECT_TICKET, OPEN_STATUS_ID)
    sim.set_faults(SILENT_REJECT_TICKET, ignore_status_change=True)
    try:
        _story(demo, sim)
    finally:
        # Leave the ticket as the seed made it, so the next run (or a person trying it) sees the same.
        sim.set_faults(SILENT_REJECT_TICKET, ignore_status_change=False)
        sim.reopen(SILENT_REJECT_TICKET, OPEN_STATUS_ID)
        sim.set_faults(SILENT_REJECT_TICKET, ignore_status_change=True)
    print("\nDemo complete.")


def _story(demo: Demo, sim: Simulator) -> None:

    demo.say(f"An engineer opens a session on {demo.psa} ticket 1001 and records what they find.")
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
    shown = sim.ticket("1002")
    view, wire = shown["note_views"][-1], shown["notes"][-1]
    own = {k: wire[k] for k in VISIBILITY_FIELDS[demo.provider] if k in wire}
    print(f"      on the ticket: note {view['id']}, customer_visible={view['customer_visible']}; {demo.psa} says {own}")
    if view["customer_visible"]:
        raise SystemExit("the escalation note is visible to the customer")

    demo.say(f"Ticket 1003's workflow silently ignores status changes: {demo.psa} answers 200 and changes nothing.")
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

    demo.say(f"An admin fixes the workflow in {demo.psa}; the engineer posts again. It resumes at the status change.")
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
    parser.add_argument(
        "--psa",
        default=os.environ.get("PSA") or "connectwise",
        help="connectwise (default), autotask or halopsa (halo): which demo account and simulator (env PSA)",
    )
    args = parser.parse_args()
    provider = ALIASES.get(args.psa.lower(), args.psa.lower())
    if provider not in DEMO_ACCOUNTS:
        sys.exit(f"PSA={args.psa!r}: choose connectwise, autotask or halopsa")
    try:
        run(args.api, provider)
    except httpx.ConnectError:
        sys.exit(
            f"Nothing answers at {args.api}: start the local stack first with `make dev` "
            "(if it runs on another port, give the same API_PORT to both: API_PORT=3100 make dev / make demo)."
        )


if __name__ == "__main__":
    main()
