// Sessions: filter by status (escalated = the escalation queue), page with next_cursor, start a session
// (its ticket is in the account's PSA).
import { ApiError, enc, get, post } from "../api.js";
import * as auth from "../auth.js";
import { append, field, fill, formatTime, h, statusBadge } from "../dom.js";
import { PSAS, accountPsa, psaName } from "../psa.js";

const PAGE_SIZE = 20;
const FILTERS = [
  ["", "All"],
  ["active", "Active"],
  ["resolved", "Resolved"],
  ["escalated", "Escalated"],
];

function listHash(status, cursor) {
  const query = new URLSearchParams();
  if (status) query.set("status", status);
  if (cursor) query.set("cursor", cursor);
  const text = query.toString();
  return text ? `#/?${text}` : "#/";
}

function ticketText(session) {
  const ticket = session.psa_ticket;
  return ticket ? `${psaName(ticket.provider)} #${ticket.ticket_id}` : "no ticket";
}

function sessionRow(session) {
  return h(
    "li",
    { class: "session-row" },
    h("a", { class: "session-title", href: `#/sessions/${enc(session.id)}` }, session.title),
    h(
      "div",
      { class: "session-meta" },
      statusBadge(session.status),
      h("span", {}, ticketText(session)),
      h("span", {}, "updated ", h("time", { datetime: session.updated_at }, formatTime(session.updated_at))),
    ),
  );
}

/** The ticket field for the account's PSA ({row, input, provider}), or why there is none ({row}, no input). */
function ticketField(psa) {
  if (psa.error) {
    const why = `Could not read the account's PSA connection (${psa.error.message}); the session starts without a ticket.`;
    return { row: h("p", { class: "error" }, why), provider: null };
  }
  if (!psa.configured || !PSAS[psa.provider]) {
    return {
      row: h(
        "p",
        { class: "hint" },
        "This account has no PSA connection, so the session can't be linked to a ticket yet: ",
        h("a", { href: "#/settings" }, "connect a PSA in Settings"),
        ".",
      ),
      provider: null,
    };
  }
  const info = PSAS[psa.provider];
  const hint = [
    "Optional.",
    info.ticketHint,
    auth.mode() === "local" ? "Demo tickets on the local stack: 1001–1006." : null,
  ];
  const { row, input } = field(
    info.ticketLabel,
    h("input", { type: "text", inputmode: "numeric", pattern: "[0-9]{1,12}", autocomplete: "off" }),
    hint.filter(Boolean).join(" "),
  );
  return { row, input, provider: psa.provider };
}

function newSessionForm(psa) {
  const title = field("Title", h("input", { type: "text", required: true, maxlength: "200", autocomplete: "off" }));
  const problem = field("Problem", h("textarea", { rows: "3", required: true, maxlength: "10000" }));
  const ticket = ticketField(psa);
  const message = h("p", { class: "form-message", role: "status" });
  const form = h(
    "form",
    {
      class: "card form-grid",
      onsubmit: async (event) => {
        event.preventDefault();
        const body = { title: title.input.value, problem: problem.input.value };
        const ticketId = ticket.input ? ticket.input.value.trim() : "";
        if (ticketId) body.psa_ticket = { provider: ticket.provider, ticket_id: ticketId };
        fill(message, "Creating…");
        try {
          const { data } = await post("/ai-sessions", body);
          location.hash = `#/sessions/${enc(data.id)}`;
        } catch (error) {
          fill(message, h("span", { class: "error" }, error instanceof ApiError ? error.message : String(error)));
        }
      },
    },
    title.row,
    problem.row,
    ticket.row,
    h("div", { class: "actions" }, h("button", { type: "submit", class: "button button--primary" }, "Create session")),
    message,
  );
  return h("details", { class: "new-session" }, h("summary", {}, "Start a session"), form);
}

export async function renderSessions(view, params, isCurrent) {
  const status = FILTERS.some(([value]) => value === params.get("status")) ? params.get("status") || "" : "";
  const cursor = params.get("cursor") || "";
  const heading = status === "escalated" ? "Escalation queue" : "Sessions";
  append(view, h("div", { class: "page-head" }, h("h1", { tabindex: "-1" }, heading)));

  const filter = h(
    "nav",
    { class: "filters", "aria-label": "Filter by status" },
    h(
      "ul",
      {},
      FILTERS.map(([value, label]) =>
        h(
          "li",
          {},
          h(
            "a",
            { href: listHash(value, ""), class: "chip", "aria-current": value === status ? "page" : null },
            label,
          ),
        ),
      ),
    ),
  );
  // The account's PSA (cached after the first read) loads beside the page of sessions.
  const psa = accountPsa().catch((error) => ({ error }));
  const query = new URLSearchParams({ limit: String(PAGE_SIZE) });
  if (status) query.set("status", status);
  if (cursor) query.set("cursor", cursor);
  const pageLoad = get(`/ai-sessions?${query}`);
  pageLoad.catch(() => {}); // reported below, once the form is in place
  append(view, filter, newSessionForm(await psa));
  let page;
  try {
    page = await pageLoad;
  } catch (error) {
    append(view, h("p", { class: "error", role: "alert" }, error.message));
    return heading;
  }
  if (!isCurrent()) return heading;

  const listLabel = status ? `${heading}: ${status}` : heading;
  if (page.items.length === 0) {
    append(
      view,
      h(
        "p",
        { class: "empty" },
        status === "escalated" ? "Nothing is waiting in the escalation queue." : "No sessions here yet.",
      ),
    );
  } else {
    append(view, h("ul", { class: "session-list", "aria-label": listLabel }, page.items.map(sessionRow)));
  }
  const pager = h("nav", { class: "pager", "aria-label": "Pages" });
  if (cursor) append(pager, h("a", { href: listHash(status, ""), class: "button button--quiet" }, "First page"));
  if (page.next_cursor) {
    append(pager, h("a", { href: listHash(status, page.next_cursor), class: "button" }, "Next page"));
  }
  if (pager.childElementCount) append(view, pager);
  return heading;
}
