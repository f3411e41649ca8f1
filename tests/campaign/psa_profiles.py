"""What the fault campaign knows about each PSA: one profile per provider, so the campaign's plans and
invariants stay provider-neutral.

A profile says where a ticket lives (a ConnectWise board, an Autotask queue, a Halo ticket type: its
"container"), which statuses a ticket can start in there and which status each kind of write-back must
leave it in (the account's demo preferences), how to make a ticket, how the tenant gives a note the wrong
visibility, which fault knob is the provider's own transient one, which simulator handler stores a new note
(the campaign arms faults the moment a note is stored), and what the PSA tells the customer about.

Everything the invariants judge goes through the simulators' neutral view (`note_views`: id, text,
customer_visible; `status_id`), so every provider is held to the same promises. Where a provider can say
more, its profile adds to the judgement, never replaces it: ConnectWise's note must carry exactly its
kind's flags; a Halo escalation must never be emailed to the end user.

"Same text", per provider (the invariants compare the neutral view's text exactly, character for
character, with the approved markdown plus the marker line):
- ConnectWise: the note's `text` as stored (what the provider sent).
- Autotask: the note's `description` as stored (plain text; the API cannot write rich text).
- HaloPSA: the action's plain `note`, which the simulator derives from the stored `note_html` with its own
  converter (tags dropped, <br> and paragraph breaks as newlines, entities unescaped): what an agent reads.
  The campaign's markdown carries `&`, `<`, `>` and quotes, so a lost escape or a stray tag shows.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from devstack.psa_sim import NoteView

KINDS = ("resolve", "escalate")


@dataclass(frozen=True)
class Container:
    """Where a ticket lives; it decides the ticket's statuses and the status each kind of write-back targets."""

    id: int
    name: str
    # Share of the provider's plans whose tickets live here (among the containers the plan's kinds allow).
    weight: float
    # Statuses a plan's ticket starts in: active, and neither target (a lost status change must be visible).
    open_statuses: tuple[int, ...]
    # kind -> the status the account's preferences send the ticket to. A kind missing: no target here.
    targets: Mapping[str, int]


@dataclass(frozen=True)
class PSAProfile:
    provider: str
    # The campaign's account on this provider's simulator.
    account_id: str
    containers: tuple[Container, ...]
    # The simulator method that handles a note create (`(req, match)`); wrapped to arm faults once it stored one.
    post_note_handler: str
    # The provider's own transient fault knob ("" for none), and the share of the provider's plans that get it.
    transient_knob: str = ""
    transient_weight: float = 0.0
    # Knobs that only this provider's simulator has, at their harmless values (cleared with the common ones).
    own_cleared_knobs: Mapping[str, Any] = field(default_factory=dict)

    # --- tickets and statuses ---

    def container(self, container_id: int) -> Container:
        return next(c for c in self.containers if c.id == container_id)

    def target(self, container_id: int, kind: str) -> int:
        return self.container(container_id).targets[kind]

    def draw_ticket(self, rng: random.Random, kinds: set[str]) -> tuple[int, int]:
        """A container that has a target for every kind the plan posts, and a start status in it."""
        allowed = [c for c in self.containers if kinds <= c.targets.keys()]
        chosen = rng.choices(allowed, weights=[c.weight for c in allowed])[0]
        return chosen.id, rng.choice(chosen.open_statuses)

    def add_ticket(self, sim: Any, ticket_id: int, container_id: int, status_id: int, title: str) -> None:
        raise NotImplementedError

    # --- fault knobs ---

    def wrong_visibility_faults(self, kind: str, overrides: Mapping[str, bool], sticky: bool) -> dict[str, Any]:
        """The knobs of a tenant that stores the kind's notes with the wrong visibility (`sticky`: no note update
        can change it). `overrides` are ConnectWise's tenant note defaults; the others force the visibility."""
        return {
            "force_note_visibility": "customer" if kind == "escalate" else "internal",
            "force_note_visibility_sticky": sticky,
        }

    def transient_faults(self, count: int) -> dict[str, Any]:
        return {self.transient_knob: count} if self.transient_knob and count else {}

    def cleared_faults(self) -> dict[str, Any]:
        """The knobs a fixed tenant has: no transient faults left, the note defaults and update policy repaired."""
        return {
            "latency": 0.0,
            "rate_limit_next": 0,
            "fail_next": 0,
            "drop_after_commit_next": 0,
            "ignore_status_change": False,
            "force_note_visibility": None,
            "force_note_visibility_sticky": False,
            "ignore_note_update": False,
            **self.own_cleared_knobs,
        }

    def transient_left(self, sim: Any, ticket_id: int) -> int:
        """How many answers of the provider's own transient knob the ticket has not handed out yet."""
        return int(getattr(sim.faults(ticket_id), self.transient_knob, 0)) if self.transient_knob else 0

    # --- what a note create stored, and what the PSA shows ---

    def stored_notes(self, body: Any, ticket_id: int | None) -> list[tuple[int, str]]:
        """(ticket, text as sent) of each note a create request with this body stores."""
        raise NotImplementedError

    def visibility_problem(self, sim: Any, ticket_id: int, view: NoteView, kind: str) -> str | None:
        """Why the note does not have the visibility its kind needs (resolve: customer-visible; escalate:
        internal only), or None."""
        wanted = kind == "resolve"
        if view.customer_visible is not wanted:
            return f"customer_visible={view.customer_visible}, a {kind} note must be {wanted}"
        return None

    def notified(self, sim: Any, ticket_id: int) -> set[str]:
        """Ids of the ticket's notes the PSA notified the customer about (an escalation never may be)."""
        return set()


# --------------------------------------------------------------------------------------------------
# ConnectWise: boards with their own statuses; per-board targets on board 2 (the account's board maps).

# CW note flags of each kind (DESIGN §5) and those a customer sees.
CW_NOTE_FLAGS: dict[str, dict[str, bool]] = {
    "resolve": {"detailDescriptionFlag": True, "resolutionFlag": True, "internalAnalysisFlag": False},
    "escalate": {
        "detailDescriptionFlag": False,
        "resolutionFlag": False,
        "internalAnalysisFlag": True,
        "issueFlag": False,
    },
}
# Tenant note defaults that give a note of the kind the wrong visibility (simulator `note_flag_overrides`).
CW_WRONG_VISIBILITY: dict[str, tuple[dict[str, bool], ...]] = {
    "escalate": (
        {"detailDescriptionFlag": True},
        {"detailDescriptionFlag": True, "resolutionFlag": True, "internalAnalysisFlag": False},
        {"issueFlag": True},
    ),
    "resolve": (
        {"detailDescriptionFlag": False},
        {"resolutionFlag": False, "internalAnalysisFlag": True},
        {"detailDescriptionFlag": False, "resolutionFlag": False, "internalAnalysisFlag": True},
    ),
}


@dataclass(frozen=True)
class ConnectWiseProfile(PSAProfile):
    def add_ticket(self, sim: Any, ticket_id: int, container_id: int, status_id: int, title: str) -> None:
        sim.add_ticket(ticket_id, board_id=container_id, status_id=status_id, summary=title)

    def wrong_visibility_faults(self, kind: str, overrides: Mapping[str, bool], sticky: bool) -> dict[str, Any]:
        # CW keeps its richer tenants: any of several flag defaults, not only "customer"/"internal".
        return {"note_flag_overrides": dict(overrides), "note_flag_overrides_sticky": sticky}

    def stored_notes(self, body: Any, ticket_id: int | None) -> list[tuple[int, str]]:
        if ticket_id is None or not isinstance(body, dict) or not isinstance(body.get("text"), str):
            return []
        return [(ticket_id, body["text"])]

    def visibility_problem(self, sim: Any, ticket_id: int, view: NoteView, kind: str) -> str | None:
        # The neutral judgement, and CW's own: exactly the kind's flags (a resolve note customer-visible
        # without its resolution flag is still wrong).
        if problem := super().visibility_problem(sim, ticket_id, view, kind):
            return problem
        note = next(n for n in sim.notes(ticket_id) if str(n["id"]) == view.id)
        flags = {name: note.get(name) is True for name in CW_NOTE_FLAGS[kind]}
        return None if flags == CW_NOTE_FLAGS[kind] else f"flags {flags}, a {kind} note needs {CW_NOTE_FLAGS[kind]}"

    def notified(self, sim: Any, ticket_id: int) -> set[str]:
        return {str(n["id"]) for n in sim.notes(ticket_id) if n.get("processNotifications") is True}


CONNECTWISE = ConnectWiseProfile(
    provider="connectwise",
    account_id="acct-a",
    containers=(
        Container(1, "Service Desk", 0.8, (1, 2, 3), {"resolve": 5, "escalate": 6}),
        Container(2, "Escalations", 0.2, (21, 22, 24), {"resolve": 25, "escalate": 23}),
    ),
    post_note_handler="_post_note",
    own_cleared_knobs={"note_flag_overrides": {}, "note_flag_overrides_sticky": False},
)


# --------------------------------------------------------------------------------------------------
# Autotask: queues share the account-wide targets (Complete 5, Escalated 14); `publish` is the visibility.


@dataclass(frozen=True)
class AutotaskProfile(PSAProfile):
    def add_ticket(self, sim: Any, ticket_id: int, container_id: int, status_id: int, title: str) -> None:
        sim.add_ticket(ticket_id, status=status_id, queue_id=container_id, title=title)

    def stored_notes(self, body: Any, ticket_id: int | None) -> list[tuple[int, str]]:
        if ticket_id is None or not isinstance(body, dict):
            return []
        text = {str(k).lower(): v for k, v in body.items()}.get("description")  # Autotask takes any key case
        return [(ticket_id, text)] if isinstance(text, str) else []


AUTOTASK = AutotaskProfile(
    provider="autotask",
    account_id="acct-autotask-c",
    containers=(
        Container(29682833, "Service Desk", 0.8, (1, 8, 13), {"resolve": 5, "escalate": 14}),
        Container(29682834, "Escalations", 0.2, (1, 8, 13), {"resolve": 5, "escalate": 14}),
    ),
    post_note_handler="_post_note",
    # The thread-limit rejection (HTTP 500 "Itgenatr005 ... thread threshold"): transient, retried after 2 s.
    transient_knob="thread_limit_next",
    transient_weight=0.15,
    own_cleared_knobs={"thread_limit_next": 0},
)


# --------------------------------------------------------------------------------------------------
# HaloPSA: ticket types with their own status lists; account-wide targets (Closed 9, Escalated - Tier 2 21).
# A Service Request has no Escalated status: an escalation there is a 422 psa_status_not_on_board before
# anything is posted, so only plans that post nothing but resolutions put their tickets there.


@dataclass(frozen=True)
class HaloProfile(PSAProfile):
    def add_ticket(self, sim: Any, ticket_id: int, container_id: int, status_id: int, title: str) -> None:
        sim.add_ticket(ticket_id, tickettype_id=container_id, status_id=status_id, summary=title)

    def stored_notes(self, body: Any, ticket_id: int | None) -> list[tuple[int, str]]:
        # POST /api/Actions: an array; items without an `id` are new actions (with one, an update).
        if not isinstance(body, list):
            return []
        stored = []
        for item in body:
            if not isinstance(item, dict) or item.get("id") is not None:
                continue
            tid, text = item.get("ticket_id"), item.get("note_html") or item.get("note")
            if isinstance(text, str) and str(tid).strip().isdigit():
                stored.append((int(str(tid).strip()), text))
        return stored

    def notified(self, sim: Any, ticket_id: int) -> set[str]:
        return {str(e["action_id"]) for e in sim.emails_sent if int(e["ticket_id"]) == ticket_id}


HALOPSA = HaloProfile(
    provider="halopsa",
    account_id="acct-halo-c",
    containers=(
        Container(1, "Incident", 0.6, (1, 2, 3), {"resolve": 9, "escalate": 21}),
        Container(2, "Service Request", 0.4, (1, 2, 3, 22), {"resolve": 9}),
    ),
    post_note_handler="_post_actions",
    # A 401 for an expired token: the provider fetches a new one and goes again, once per call.
    transient_knob="expire_token_next",
    transient_weight=0.15,
    own_cleared_knobs={"expire_token_next": 0},
)


PROFILES: dict[str, PSAProfile] = {p.provider: p for p in (CONNECTWISE, AUTOTASK, HALOPSA)}
PROVIDERS = tuple(PROFILES)
# Share of plans per provider (drawn from a stream of their own).
PROVIDER_WEIGHTS = (1 / 3, 1 / 3, 1 / 3)
