// One session: problem, PSA ticket, evidence (+ add), suggested fixes, and the write-back panel.
import { ApiError, enc, get, post, put } from "../api.js";
import { append, field, fill, formatTime, h, statusBadge } from "../dom.js";
import { fixesSection } from "./fixes.js";
import { PSAS, accountPsa, psaName } from "../psa.js";
import { writebackPanel } from "./writeback.js";

const EVIDENCE_KINDS = [
  ["confirmed", "Confirmed"],
  ["tried", "Tried"],
  ["hypothesis", "Hypothesis"],
  ["next_step", "Next step"],
  ["message", "Message"],
];

function evidenceItem(evidence) {
  return h(
    "li",
    { class: "evidence-item" },
    h("span", { class: ["badge", `badge--${evidence.kind}`] }, evidence.kind.replace("_", " ")),
    h(
      "div",
      { class: "evidence-body" },
      h("p", { class: "evidence-text" }, evidence.text),
      evidence.result ? h("p", { class: "evidence-result" }, "Result: ", evidence.result) : null,
      h("p", { class: "hint" }, `${evidence.created_by} · ${formatTime(evidence.created_at)}`),
    ),
  );
}

function evidenceSection(sessionId, { onAdded }) {
  const list = h("ul", { class: "evidence-list", "aria-label": "Evidence" });
  const note = h("p", { class: "hint" });
  const kind = field("Kind", h("select", {}, EVIDENCE_KINDS.map(([v, l]) => h("option", { value: v }, l))));
  kind.input.value = "tried";
  const text = field("What happened", h("textarea", { rows: "2", required: true, maxlength: "10000" }));
  const result = field("Result (optional)", h("input", { type: "text", maxlength: "4000", autocomplete: "off" }));
  const message = h("p", { class: "form-message", role: "status" });
  const form = h(
    "form",
    {
      class: "form-grid evidence-form",
      onsubmit: async (event) => {
        event.preventDefault();
        const body = { kind: kind.input.value, text: text.input.value };
        if (result.input.value.trim()) body.result = result.input.value;
        fill(message, "Adding…");
        try {
          const { data } = await post(`/ai-sessions/${enc(sessionId)}/evidence`, body);
          list.append(evidenceItem(data));
          fill(note);
          text.input.value = "";
          result.input.value = "";
          fill(message, "Evidence added.");
          await onAdded();
        } catch (error) {
          fill(message, h("span", { class: "error" }, error instanceof ApiError ? error.message : String(error)));
        }
      },
    },
    kind.row,
    text.row,
    result.row,
    h("div", { class: "actions" }, h("button", { type: "submit", class: "button" }, "Add evidence")),
    message,
  );
  const section = h(
    "section",
    { class: "panel", "aria-labelledby": "evidence-heading" },
    h("h2", { id: "evidence-heading" }, "Evidence"),
    note,
    list,
    form,
  );

  const more = h("button", { type: "button", class: "button button--quiet", hidden: true }, "More evidence");
  let cursor = null;
  async function loadPage() {
    try {
      const query = cursor ? `?cursor=${encodeURIComponent(cursor)}` : "";
      const page = await get(`/ai-sessions/${enc(sessionId)}/evidence${query}`);
      for (const item of page.items || []) list.append(evidenceItem(item));
      cursor = page.next_cursor || null;
      more.hidden = !cursor;
      fill(note, list.childElementCount ? "" : "No evidence yet.");
    } catch (error) {
      fill(note, h("span", { class: "error" }, error.message));
    }
  }
  more.addEventListener("click", loadPage);
  section.insertBefore(more, form);
  async function load() {
    cursor = null;
    await loadPage();
  }
  return { section, load, form };
}

/** The session's ticket, and a form to link one in the account's PSA (`psa`: its connection, or {error}). */
function ticketSection(sessionId, psa, { getSession, onLinked }) {
  const current = h("p", {});
  const mismatch = h("p", { class: "hint hint--warn", hidden: true });
  const info = psa.configured ? PSAS[psa.provider] : null;
  const message = h("p", { class: "form-message", role: "status" });
  let form;
  if (info) {
    const input = field(
      info.ticketLabel,
      h("input", { type: "text", inputmode: "numeric", pattern: "[0-9]{1,12}", required: true, autocomplete: "off" }),
      info.ticketHint,
    );
    form = h(
      "form",
      {
        class: "inline-form",
        onsubmit: async (event) => {
          event.preventDefault();
          fill(message, "Linking…");
          try {
            const body = { provider: psa.provider, ticket_id: input.input.value };
            await put(`/ai-sessions/${enc(sessionId)}/psa-ticket`, body);
            fill(message, "Ticket linked.");
            input.input.value = "";
            await onLinked();
          } catch (error) {
            fill(message, h("span", { class: "error" }, error.message));
          }
        },
      },
      input.row,
      h("button", { type: "submit", class: "button" }, "Link ticket"),
    );
  } else if (psa.error) {
    form = h("p", { class: "error" }, `Could not read the account's PSA connection: ${psa.error.message}`);
  } else {
    form = h(
      "p",
      { class: "hint" },
      "This account has no PSA connection, so no ticket can be linked: ",
      h("a", { href: "#/settings" }, "connect a PSA in Settings"),
      ".",
    );
  }
  const section = h(
    "section",
    { class: "panel", "aria-labelledby": "ticket-heading" },
    h("h2", { id: "ticket-heading" }, "PSA ticket"),
    current,
    mismatch,
    form,
    message,
  );
  function update() {
    const session = getSession();
    const ticket = session.psa_ticket;
    fill(
      current,
      ticket
        ? [`${PSAS[ticket.provider]?.name ?? ticket.provider} ticket `, h("strong", {}, `#${ticket.ticket_id}`)]
        : "No ticket linked: a post closes the session here only.",
    );
    const elsewhere = Boolean(ticket && info && ticket.provider !== psa.provider);
    mismatch.hidden = !elsewhere;
    fill(
      mismatch,
      elsewhere
        ? `This ticket is in ${psaName(ticket.provider)}, but the account is connected to ${info.name}: a post will be ` +
            `refused. Link a ticket in ${psaName(psa.provider)} instead, or change the connection in Settings.`
        : "",
    );
    form.hidden = session.status !== "active";
  }
  return { section, update };
}

export async function renderSession(view, sessionId, isCurrent) {
  const psaLoad = accountPsa().catch((error) => ({ error })); // cached after the first read
  let session;
  try {
    session = await get(`/ai-sessions/${enc(sessionId)}`);
  } catch (error) {
    append(
      view,
      h("h1", { tabindex: "-1" }, error.status === 404 ? "Session not found" : "Could not load the session"),
      h("p", { class: "error" }, error.message),
      h("p", {}, h("a", { href: "#/" }, "Back to sessions")),
    );
    return "Session";
  }
  if (!isCurrent()) return session.title;

  const getSession = () => session;
  const headMeta = h("p", { class: "session-meta" });
  const resolution = h("div", {});
  const panel = writebackPanel(sessionId, { getSession, refreshSession });
  const ticket = ticketSection(sessionId, await psaLoad, { getSession, onLinked: refreshSession });
  const evidence = evidenceSection(sessionId, { onAdded: refreshSession });
  const fixes = fixesSection(sessionId, { active: session.status === "active", onDecided: refreshSession });

  function updateHead() {
    fill(
      headMeta,
      statusBadge(session.status),
      h(
        "span",
        {},
        session.psa_ticket ? `${psaName(session.psa_ticket.provider)} ticket #${session.psa_ticket.ticket_id}` : "no ticket",
      ),
      h("span", {}, `state version ${session.state_version}`),
      h("span", {}, `opened by ${session.created_by} · ${formatTime(session.created_at)}`),
    );
    const closing = session.resolution_summary || session.escalation_reason;
    fill(resolution, closing ? h("p", { class: "closing" }, h("strong", {}, "Closing summary: "), closing) : null);
    ticket.update();
    evidence.form.hidden = session.status !== "active";
  }

  async function refreshSession() {
    try {
      session = await get(`/ai-sessions/${enc(sessionId)}`);
    } catch {
      return; // keep showing what we have; the next action reports the error
    }
    updateHead();
    await panel.sessionChanged();
  }

  append(
    view,
    h("p", { class: "crumbs" }, h("a", { href: "#/" }, "Sessions")),
    h("div", { class: "page-head" }, h("h1", { tabindex: "-1" }, session.title), headMeta),
    h(
      "div",
      { class: "session-grid" },
      h(
        "div",
        { class: "column" },
        h(
          "section",
          { class: "panel", "aria-labelledby": "problem-heading" },
          h("h2", { id: "problem-heading" }, "Problem"),
          h("p", { class: "problem" }, session.problem),
          resolution,
        ),
        ticket.section,
        evidence.section,
        fixes.section,
      ),
      h("div", { class: "column" }, panel.section),
    ),
  );
  updateHead();
  await Promise.all([evidence.load(), fixes.load(), panel.sessionChanged()]);
  return session.title;
}
