"""What every PSA simulator shares: a real threaded HTTP server on loopback, request recording, the control
endpoint, the fault knobs common to all three PSAs, and one vendor-neutral view of a ticket's notes.

Each simulator (`cw_simulator`, `autotask_simulator`, `halo_simulator`) subclasses `PSASimulator`: it routes
its vendor's wire format in `_route`, answers errors in its vendor's body shape (`SimError`), and says what
its notes look like to a customer (`note_views`), so tests and the fault campaign can check any PSA the same
way. Dev and test tool only; never shipped in the layer.

Control endpoint (not any vendor's API; the demo uses it from another process, as an admin would):
    GET  /__simulator/tickets/{id}             the ticket, its notes, their neutral views and its faults
    POST /__simulator/tickets/{id}/faults      {knob: value, ...}
    POST /__simulator/tickets/{id}/status      {"status_id": n}   (a person moving the ticket in the PSA UI)
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import re
import signal
import socket
import struct
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any, ClassVar, Literal, Self
from urllib.parse import parse_qs, urlsplit

_CONTROL = re.compile(r"^/__simulator/tickets/(\d+)(?:/(faults|status))?/?$")

Visibility = Literal["customer", "internal"]


@dataclass
class TicketFaults:
    """How the PSA misbehaves for one ticket; every simulator honours these. Counters (`*_next`) count down
    as calls touching the ticket consume them. Mutate `sim.faults(id)` or use `sim.set_faults(id, ...)`."""

    # The status change answers success and changes nothing (the PSA silently dropping it).
    ignore_status_change: bool = False
    # A workflow puts the previous status back this many seconds after a status change;
    # 0 = right after the response is written (later calls on the ticket see the old status).
    revert_status_after: float | None = None
    rate_limit_next: int = 0
    retry_after: int = 5
    fail_next: int = 0
    latency: float = 0.0
    # The next K note creates store the note, then reset the connection without any response.
    drop_after_commit_next: int = 0
    # This ticket's calls are refused as unauthenticated.
    auth_fail: bool = False
    # New notes get this visibility whatever was sent (a tenant default or note-type policy).
    force_note_visibility: Visibility | None = None
    # ...and note updates cannot change it either (a policy no API update overrides).
    force_note_visibility_sticky: bool = False
    # Note updates answer success and change nothing (the PSA dropping the update silently).
    ignore_note_update: bool = False


@dataclass(frozen=True)
class NoteView:
    """A note as a customer and an auditor would judge it, whatever the PSA's own fields are."""

    id: str
    text: str
    customer_visible: bool


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the simulator saw it. `headers` keys are lower-case; `query` keeps each
    parameter's first value; `body` is parsed JSON (or form fields for a form post), else the raw text,
    else None; `status` 0 means the connection was dropped without an answer."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    status: int


@dataclass
class SimRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    body_invalid: bool
    raw: str = ""

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip().lower()


@dataclass
class SimReply:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json; charset=utf-8"
    drop: bool = False
    # Runs after the response is written (the "immediate" workflow revert).
    after: Callable[[], None] | None = None


class SimError(Exception):
    """Answer with this status and vendor error body; raised anywhere in request handling."""

    def __init__(
        self,
        status: int,
        body: Any,
        headers: dict[str, str] | None = None,
        content_type: str = "application/json; charset=utf-8",
    ) -> None:
        super().__init__(str(body))
        self.status = status
        self.body = body
        self.headers = headers or {}
        self.content_type = content_type


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class PSASimulator:
    """A PSA tenant on 127.0.0.1. Thread-safe: every state helper takes `self._lock`.

    Subclasses implement the vendor: `_route`, `ticket`, `notes`, `note_views`, `status_id`, `set_status`,
    `connection_settings`, `preferences`, `seed_demo`, and the vendor's error bodies (`_unauthorized`,
    `_rate_limited`, `_server_error`, `_not_found`).
    """

    provider: ClassVar[str]
    faults_type: ClassVar[type[TicketFaults]] = TicketFaults
    server_name: ClassVar[str] = "psa-simulator"

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, verbose: bool = False) -> None:
        self.verbose = verbose
        self._host = host
        self._port = port
        self._lock = threading.RLock()
        self._faults: dict[int, TicketFaults] = {}
        # Each ticket's notes (Halo: actions), oldest first, in the vendor's shape.
        self._notes: dict[int, list[dict[str, Any]]] = {}
        self._pending_reverts: dict[int, threading.Event] = {}
        self._timers: list[threading.Timer] = []
        self._requests: list[RecordedRequest] = []
        self._credentials_revoked = False
        self._connections: set[socket.socket] = set()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # ---------------------------------------------------------------------------------------------
    # Lifecycle

    def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("simulator already started")
        server = _Server((self._host, self._port), _Handler)
        server.sim = self
        self._server = server
        self._port = server.server_address[1]
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.01}, name=self.server_name, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        with self._lock:
            timers, self._timers = self._timers, []
            connections = list(self._connections)
        for timer in timers:
            timer.cancel()
        # Idle keep-alive connections would otherwise keep their handler threads blocked on read.
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Self:
        if self._server is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def site_url(self) -> str:
        if self._port == 0:
            raise RuntimeError("start the simulator first")
        return f"http://{self._host}:{self._port}"

    # ---------------------------------------------------------------------------------------------
    # What every simulator offers tests, the campaign and the demo

    def ticket(self, ticket_id: int | str) -> dict[str, Any]:
        """The ticket as the vendor's API returns it."""
        with self._lock:
            return self._ticket_json(self._require_ticket(int(ticket_id)))

    def notes(self, ticket_id: int | str) -> list[dict[str, Any]]:
        """The ticket's notes, oldest first, in the vendor's shape."""
        with self._lock:
            self._require_ticket(int(ticket_id))
            return copy.deepcopy(self._notes[int(ticket_id)])

    def note_views(self, ticket_id: int | str) -> list[NoteView]:
        """The ticket's notes, oldest first, as a customer would see them."""
        raise NotImplementedError

    def status_id(self, ticket_id: int | str) -> int:
        raise NotImplementedError

    def set_status(self, ticket_id: int | str, status_id: int) -> None:
        """Out-of-band status change, as a person in the PSA's UI would make it."""
        raise NotImplementedError

    def add_person_note(self, ticket_id: int | str, text: str, *, customer_visible: bool) -> NoteView:
        """A note typed by a person in the PSA's UI."""
        raise NotImplementedError

    def connection_settings(self) -> dict[str, Any]:
        """The body of `PUT /account-settings/psa-connection` that points an account at this simulator."""
        raise NotImplementedError

    def preferences(self) -> dict[str, Any]:
        """The body of `PUT /account-settings/preferences` the demo account uses with this simulator."""
        raise NotImplementedError

    def seed_demo(self) -> dict[str, Any]:
        raise NotImplementedError

    def faults(self, ticket_id: int | str) -> TicketFaults:
        with self._lock:
            return self._faults.setdefault(int(ticket_id), self.faults_type())

    def set_faults(self, ticket_id: int | str, **kw: Any) -> TicketFaults:
        known = {f.name for f in fields(self.faults_type)}
        unknown = set(kw) - known
        if unknown:
            raise TypeError(f"unknown fault knobs: {sorted(unknown)}")
        faults = self.faults(ticket_id)
        with self._lock:
            for name, value in kw.items():
                setattr(faults, name, value)
        return faults

    def revoke_credentials(self) -> None:
        """Every API call is refused as unauthenticated (the keys were rotated) until restored."""
        with self._lock:
            self._credentials_revoked = True

    def restore_credentials(self) -> None:
        with self._lock:
            self._credentials_revoked = False

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    # ---------------------------------------------------------------------------------------------
    # Vendor hooks: error bodies

    def _unauthorized(self) -> SimError:
        raise NotImplementedError

    def _rate_limited(self, retry_after: int) -> SimError:
        raise NotImplementedError

    def _server_error(self) -> SimError:
        raise NotImplementedError

    def _not_found(self, what: str) -> SimError:
        raise NotImplementedError

    def _response_headers(self) -> dict[str, str]:
        return {"x-server-name": self.server_name}

    def _route(self, req: SimRequest) -> SimReply:
        raise NotImplementedError

    def _require_ticket(self, tid: int) -> Any:
        """The ticket's state, or the vendor's not-found answer (raised)."""
        raise NotImplementedError

    def _ticket_json(self, ticket: Any) -> dict[str, Any]:
        raise NotImplementedError

    # ---------------------------------------------------------------------------------------------
    # Shared request handling

    def _record(self, req: SimRequest, status: int) -> None:
        with self._lock:
            self._requests.append(RecordedRequest(req.method, req.path, req.query, req.headers, req.body, status))

    def _respond(self, req: SimRequest) -> SimReply:
        try:
            if m := _CONTROL.match(req.path):
                return self._control(req, int(m.group(1)), m.group(2))
            return self._route(req)
        except SimError as err:
            return SimReply(err.status, err.body, headers=err.headers, content_type=err.content_type)
        except Exception:
            traceback.print_exc(file=sys.stderr)
            failure = self._server_error()
            return SimReply(failure.status, failure.body, headers=failure.headers, content_type=failure.content_type)

    def _control(self, req: SimRequest, ticket_id: int, what: str | None) -> SimReply:
        if what == "faults" and req.method == "POST":
            try:
                self.set_faults(ticket_id, **(req.body or {}))
            except (TypeError, KeyError) as error:
                return SimReply(400, {"message": str(error)})
        elif what == "status" and req.method == "POST":
            status_id = req.body.get("status_id") if isinstance(req.body, dict) else None
            if isinstance(status_id, bool) or not isinstance(status_id, int):
                return SimReply(400, {"message": "status_id must be an integer"})
            try:
                self.set_status(ticket_id, status_id)
            except ValueError as error:
                return SimReply(400, {"message": str(error)})
        elif what is not None or req.method != "GET":
            return SimReply(405, {"message": f"{req.method} is not allowed here"})
        ticket, notes = self.ticket(ticket_id), self.notes(ticket_id)  # an unknown ticket: the vendor's 404
        views = [dataclasses.asdict(v) for v in self.note_views(ticket_id)]
        faults = dataclasses.asdict(self.faults(ticket_id))
        return SimReply(200, {"ticket": ticket, "notes": notes, "note_views": views, "faults": faults})

    def _credentials_revoked_now(self) -> bool:
        with self._lock:
            return self._credentials_revoked

    def _apply_ticket_faults(self, tid: int) -> TicketFaults | None:
        """The common knobs, before a call touching the ticket is handled (raises the faulty answer)."""
        with self._lock:
            pending = self._pending_reverts.get(tid)
            faults = self._faults.get(tid)
        if pending is not None:
            pending.wait(timeout=2)
        if faults is None:
            return None
        if faults.latency > 0:
            time.sleep(faults.latency)
        if faults.auth_fail:
            raise self._unauthorized()
        with self._lock:
            if faults.rate_limit_next > 0:
                faults.rate_limit_next -= 1
                raise self._rate_limited(faults.retry_after)
            if faults.fail_next > 0:
                faults.fail_next -= 1
                raise self._server_error()
        return faults

    def _ticket_faults_or_default(self, tid: int) -> TicketFaults:
        return self._faults.get(tid) or self.faults_type()

    def _schedule_revert(
        self, tid: int, faults: TicketFaults, revert_if_still: Callable[[], bool], revert: Callable[[], None]
    ) -> Callable[[], None] | None:
        """A workflow that undoes a status change: `revert` runs (under the lock) if `revert_if_still()`."""
        delay = faults.revert_status_after
        if delay is None:
            return None

        def run() -> None:
            with self._lock:
                # A workflow keyed on the status we set: if someone moved it since, it no longer fires.
                if revert_if_still():
                    revert()
                done = self._pending_reverts.pop(tid, None)
            if done is not None:
                done.set()

        if delay <= 0:
            # Calls on this ticket wait until the revert ran, so "immediately" is deterministic.
            self._pending_reverts[tid] = threading.Event()
            return run
        timer = threading.Timer(delay, run)
        timer.daemon = True
        self._timers.append(timer)
        timer.start()
        return None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default backlog of 5 drops SYNs under a burst of parallel clients (1 s retransmit).
    request_queue_size = 128
    sim: PSASimulator

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that time out and hang up are part of the fault model, not simulator bugs.
        if not isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle on, delayed ACKs add ~40 ms to every answer.
    disable_nagle_algorithm = True
    server: _Server

    def setup(self) -> None:
        super().setup()
        with self.server.sim._lock:
            self.server.sim._connections.add(self.connection)

    def finish(self) -> None:
        with self.server.sim._lock:
            self.server.sim._connections.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PATCH(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.sim.verbose:
            super().log_message(format, *args)

    def _serve(self) -> None:
        sim = self.server.sim
        req = self._read_request()
        reply = sim._respond(req)
        sim._record(req, 0 if reply.drop else reply.status)
        if reply.drop:
            # RST, not FIN: the client sees a reset connection and no response at all.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
            self.close_connection = True
            return
        if isinstance(reply.body, str):
            payload = reply.body.encode()
        else:
            payload = b"" if reply.body is None else json.dumps(reply.body).encode()
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(payload)))
            for name, value in {**sim._response_headers(), **reply.headers}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)
            self.wfile.flush()
        finally:
            # The workflow runs whether or not the client was still listening.
            if reply.after is not None:
                reply.after()

    def _read_request(self) -> SimRequest:
        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        headers = {k.lower(): v for k, v in self.headers.items()}
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length).decode("utf-8", "replace") if length > 0 else ""
        body: Any = None
        invalid = False
        ctype = headers.get("content-type", "").split(";")[0].strip().lower()
        if raw and ctype == "application/x-www-form-urlencoded":
            body = {k: v[0] for k, v in parse_qs(raw, keep_blank_values=True).items()}
        elif raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body, invalid = raw, True
        return SimRequest(self.command, parts.path, query, headers, body, invalid, raw)


def serve_forever(sim: PSASimulator, banner: list[str]) -> None:
    """Run a started simulator until SIGINT/SIGTERM, after printing its banner (the `main` of each one)."""
    for line in banner:
        print(line)
    sys.stdout.flush()
    stopping = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        while not stopping.wait(0.5):
            pass
    finally:
        sim.stop()
