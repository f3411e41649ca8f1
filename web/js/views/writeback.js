// The preview panel (resolution note or escalation package), the editable note, the secret scanner's
// warnings, Confirm & post, the outcome (role="status"), and the ledger entry of the last write-back.
import { ApiError, enc, get, post } from "../api.js";
import { append, field, fill, formatTime, h } from "../dom.js";
import { renderMarkdown } from "../markdown.js";
import { PSAS, psaName } from "../psa.js";
import { preferenceLabel } from "./settings.js";

const KINDS = {
  "resolution-note": {
    button: "Preview resolution note",
    title: "Resolution note",
    // How each PSA shows the note; "": no ticket (or a PSA this console does not know).
    audience: {
      connectwise: "Customer-visible: posted as a Discussion + Resolution note.",
      autotask: 'Customer-visible: posted as a ticket note published to "All Autotask Users".',
      halopsa: "Customer-visible: posted as an action the end user can see.",
      "": "Customer-visible.",
    },
    summaryLabel: "Resolution summary (optional)",
    summaryField: "resolution_summary",
  },
  "escalation-package": {
    button: "Preview escalation package",
    title: "Escalation package",
    audience: {
      connectwise: "Internal only: posted as an Internal Analysis note; the customer is not notified.",
      autotask: "Internal only: posted as a ticket note published to internal users; the customer is not notified.",
      halopsa: "Internal only: posted as an action hidden from the end user, with no email.",
      "": "Internal only.",
    },
    summaryLabel: "Escalation reason (optional)",
    summaryField: "escalation_reason",
  },
};
const POLL_MS = 1500;

const wait = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function ticketLabel(session) {
  const ticket = session.psa_ticket;
  return ticket ? `${psaName(ticket.provider)} ticket #${ticket.ticket_id}` : "no PSA ticket";
}

/** The PSA the session's ticket is in, by name ("the PSA" without a ticket). */
function ticketPsa(session) {
  return session.psa_ticket ? psaName(session.psa_ticket.provider) : "the PSA";
}

const settingsLink = (text) => h("a", { href: "#/settings" }, text);

/** The ledger entry as a definition list (only the fields it has). */
function ledgerList(entry) {
  const rows = [
    ["Write-back", entry.writeback_id],
    ["Kind", entry.kind],
    ["State", entry.state],
    ["Outcome", entry.outcome],
    ["Ticket", entry.ticket ? `${psaName(entry.ticket.provider)} #${entry.ticket.ticket_id}` : "none (local only)"],
    ["Board", entry.board_name],
    ["Note", entry.note_id ? `${entry.note_id}${entry.note_reused_from ? " (kept from an earlier attempt)" : ""}` : null],
    ["Target status", entry.target_status_name ?? entry.target_status_id],
    ["Verified status", entry.verified_status_name ?? entry.verified_status_id],
    ["Status change skipped", entry.status_transition_skipped_reason],
    ["Posted", entry.posted_at ? formatTime(entry.posted_at) : null],
    ["Finished", entry.finished_at ? formatTime(entry.finished_at) : null],
    ["Drift check", entry.drift ? (entry.drift.drifted ? "status drifted after verification" : "status held") : null],
    ["Error", entry.error ? `${entry.error.message} (${entry.error.code})` : null],
  ].filter(([, value]) => value !== null && value !== undefined && value !== "");
  return h(
    "dl",
    { class: "ledger" },
    rows.map(([name, value]) => [h("dt", {}, name), h("dd", {}, String(value))]),
  );
}

export function writebackPanel(sessionId, { getSession, refreshSession }) {
  const state = { kind: null, preview: null, busy: false };
  const outcome = h("div", { class: "outcome", role: "status", "aria-live": "polite", "aria-atomic": "true" });
  const warnings = h("div", { class: "warnings", role: "alert" });
  const panelMessage = h("p", { class: "form-message" });
  const note = h("textarea", { id: "note", rows: "14", spellcheck: "true" });
  const summary = h("input", { type: "text", maxlength: "500", autocomplete: "off" });
  const summaryField = field("Summary", summary);
  const rendered = h("div", { class: "markdown", id: "note-rendered" });
  const meta = h("p", { class: "preview-meta" });
  const stale = h("div", { class: "stale", hidden: true });
  const previewTitle = h("h3", { id: "preview-title", tabindex: "-1" });
  const audience = h("p", { class: "hint" });
  const confirm = h("button", { type: "button", class: "button button--primary" }, "Confirm & post");
  const editor = h(
    "div",
    { class: "editor", hidden: true },
    previewTitle,
    audience,
    meta,
    stale,
    h(
      "div",
      { class: "note-grid" },
      h("div", { class: "field" }, h("label", { for: "note" }, "Note"), note),
      h(
        "div",
        { class: "note-rendered" },
        h("p", { class: "label", id: "rendered-label" }, "How it will read"),
        rendered,
      ),
    ),
    summaryField.row,
    warnings,
    h("div", { class: "actions" }, confirm),
  );
  rendered.setAttribute("aria-labelledby", "rendered-label");
  rendered.setAttribute("role", "region");
  rendered.setAttribute("tabindex", "0"); // it scrolls: reachable by keyboard
  const previewButtons = Object.entries(KINDS).map(([kind, info]) =>
    h("button", { type: "button", class: "button", onclick: () => preview(kind) }, info.button),
  );
  const ledger = h("div", { class: "ledger-slot" });
  const section = h(
    "section",
    { class: "panel writeback", "aria-labelledby": "writeback-heading" },
    h("h2", { id: "writeback-heading" }, "Close the session"),
    h("div", { class: "actions" }, previewButtons),
    panelMessage,
    editor,
    outcome,
    h("h3", { class: "ledger-heading" }, "Last write-back"),
    ledger,
  );

  let renderTimer = null;
  note.addEventListener("input", () => {
    clearTimeout(renderTimer);
    renderTimer = setTimeout(() => renderMarkdown(rendered, note.value), 150);
    // Warnings were about the text as it was; the next post scans the new text.
    warnings.querySelector(".post-anyway")?.remove();
  });
  confirm.addEventListener("click", () => confirmAndPost(false));

  function setBusy(busy) {
    state.busy = busy;
    confirm.disabled = busy;
    for (const b of previewButtons) b.disabled = busy;
  }

  async function preview(kind) {
    const edited = state.preview && note.value !== state.preview.markdown;
    if (edited && !window.confirm("Replace your edits with a new preview? The text you edited will be lost.")) return;
    setBusy(true);
    fill(panelMessage, `Writing the ${KINDS[kind].title.toLowerCase()}…`);
    try {
      const { data } = await post(`/ai-sessions/${enc(sessionId)}/${kind}/preview`);
      if (kind !== state.kind) summary.value = ""; // a resolution summary is no escalation reason, nor back
      state.kind = kind;
      state.preview = data;
      fill(panelMessage);
      fill(outcome);
      fill(warnings);
      showPreview();
      previewTitle.focus();
    } catch (error) {
      fill(panelMessage, h("span", { class: "error" }, `Preview failed: ${error.message}`));
    } finally {
      setBusy(false);
    }
  }

  function showPreview() {
    const info = KINDS[state.kind];
    const data = state.preview;
    editor.hidden = false;
    fill(previewTitle, info.title);
    const provider = getSession().psa_ticket?.provider;
    fill(audience, info.audience[PSAS[provider] ? provider : ""]);
    summaryField.row.querySelector("label").textContent = info.summaryLabel;
    note.value = data.markdown;
    renderMarkdown(rendered, data.markdown);
    fill(
      meta,
      h("span", { class: ["badge", data.from_cache ? "badge--cache" : "badge--fresh"] }, data.from_cache ? "From cache" : "Freshly written"),
      h("span", {}, `writer: ${data.writer ?? "unknown"}`),
      h("span", {}, `state version ${data.state_version}`),
      h("span", {}, data.target_ticket_ref ? `for ticket #${data.target_ticket_ref.ticket_id}` : "no PSA ticket: local only"),
    );
    if (data.warnings && data.warnings.length) showWarnings(data.warnings, false);
    updateStale();
  }

  /** After a state change (evidence, decision, ticket link) the preview is out of date: offer to regenerate. */
  function updateStale() {
    const session = getSession();
    if (!state.preview || session.state_version <= state.preview.state_version) {
      stale.hidden = true;
      fill(stale);
      return;
    }
    stale.hidden = false;
    fill(
      stale,
      h(
        "p",
        {},
        `The session changed after this preview (state version ${state.preview.state_version} → ${session.state_version}). `,
        "Regenerate it to include the change; your edits will be replaced.",
      ),
      h("button", { type: "button", class: "button button--small", onclick: () => preview(state.kind) }, "Regenerate"),
    );
  }

  function showWarnings(list, blocking) {
    const items = list.map((w) =>
      h(
        "li",
        {},
        h("strong", {}, `Line ${w.line}, column ${w.column}`),
        `: looks like ${String(w.kind).replace(/_/g, " ")} `,
        h("code", {}, w.excerpt),
      ),
    );
    fill(
      warnings,
      h(
        "p",
        { class: "warnings-title" },
        blocking
          ? "Not posted: the secret scanner found what looks like a secret in this customer-visible note."
          : "The secret scanner flagged this text; check it before posting.",
      ),
      h("ul", {}, items),
      blocking
        ? h(
            "div",
            { class: "actions post-anyway" },
            h("p", { class: "hint" }, "Remove it from the note, or if it is not a secret:"),
            h("button", { type: "button", class: "button button--danger", onclick: () => confirmAndPost(true) }, "Post anyway"),
          )
        : null,
    );
  }

  async function confirmAndPost(acknowledge) {
    if (!state.kind || state.busy) return;
    const body = { markdown: note.value };
    if (summary.value.trim()) body[KINDS[state.kind].summaryField] = summary.value.trim();
    if (acknowledge) body.acknowledge_warnings = true;
    setBusy(true);
    fill(outcome, h("p", {}, "Posting…"));
    outcome.className = "outcome outcome--working";
    try {
      const { status, data } = await post(`/ai-sessions/${enc(sessionId)}/${state.kind}/post`, body);
      fill(warnings);
      if (status === 202) await poll(data);
      else showSuccess(data);
    } catch (error) {
      await showError(error);
    } finally {
      setBusy(false);
      await refreshSession();
    }
  }

  /** 202: the PSA is still working; follow the ledger (status_url) until it ends. */
  async function poll(accepted) {
    const url = accepted.status_url || `/ai-sessions/${enc(sessionId)}/writebacks/${enc(accepted.writeback_id)}`;
    outcome.className = "outcome outcome--working";
    for (let attempt = 1; ; attempt += 1) {
      fill(
        outcome,
        h("p", { class: "outcome-title" }, "Still working…"),
        h("p", {}, `The PSA has not finished yet (write-back ${accepted.writeback_id}); checking again (${attempt}).`),
      );
      await wait(POLL_MS);
      let entry;
      try {
        entry = await get(url);
      } catch (error) {
        if (error.status === 0) continue; // a dropped connection: keep polling
        throw error;
      }
      if (entry.state === "succeeded") {
        showSuccess({ ...entry, session_status: entry.kind === "resolve" ? "resolved" : "escalated" });
        return;
      }
      if (entry.state === "failed") {
        const e = entry.error || {};
        throw new ApiError(e.status || 502, e.code || "writeback_failed", e.message || "The write-back failed.", {
          ...(e.details || {}),
          writeback_id: entry.writeback_id,
        });
      }
    }
  }

  function showSuccess(result) {
    const session = getSession();
    const ticket = ticketLabel(session);
    const local = result.outcome === "resolved_local" || result.outcome === "escalated_local";
    const verb = result.outcome?.startsWith("escalated") ? "Escalated" : "Resolved";
    outcome.className = "outcome outcome--success";
    const lines = [h("p", { class: "outcome-title" }, local ? `${verb} locally` : verb)];
    if (local) {
      lines.push(h("p", {}, "This session has no PSA ticket, so nothing was sent to the PSA."));
    } else if (result.verified_status_name || result.verified_status_id) {
      lines.push(
        h(
          "p",
          {},
          `The ${ticket} is now in status `,
          h("strong", { class: "verified-status" }, result.verified_status_name ?? `#${result.verified_status_id}`),
          ", verified by re-reading the ticket.",
        ),
      );
    }
    if (result.status_transition_skipped_reason) {
      lines.push(h("p", {}, `The note was posted; the status was not changed: ${result.status_transition_skipped_reason}`));
    }
    if (result.external_id) lines.push(h("p", {}, `Note ${result.external_id} is on the ${ticket}.`));
    if (result.note_amended) lines.push(h("p", {}, "The note already on the ticket was updated to this text."));
    fill(outcome, lines);
  }

  async function showError(error) {
    const session = getSession();
    const ticket = ticketLabel(session);
    const psa = ticketPsa(session);
    const d = error.details || {};
    const code = h("p", { class: "code" }, `${error.status || "network"} · ${error.code}`);
    if (error.code === "sensitive_content" && Array.isArray(d.warnings)) {
      showWarnings(d.warnings, true);
      outcome.className = "outcome outcome--blocked";
      fill(
        outcome,
        h("p", { class: "outcome-title" }, "Not posted"),
        h("p", {}, "The secret scanner flagged the note: see the warning above."),
        code,
      );
      return;
    }
    if (error.code === "psa_status_not_applied") {
      outcome.className = "outcome outcome--error";
      const expectedName = h("span", {}, `status #${d.expected_status_id}`);
      fill(
        outcome,
        h("p", { class: "outcome-title" }, "The ticket's status did not change"),
        h(
          "p",
          {},
          "Expected ",
          h("strong", { class: "expected-status" }, expectedName),
          "; the ticket is actually in ",
          h("strong", { class: "actual-status" }, `${d.actual_status_name ?? "?"} (#${d.actual_status_id})`),
          `. ${psa} accepted the change but did not apply it, or a workflow changed it back.`,
        ),
        d.note_kept || d.note_id
          ? h("p", {}, `The note is on the ${ticket}${d.note_id ? ` (note ${d.note_id})` : ""} and will not be posted twice.`)
          : null,
        h(
          "p",
          { class: "next-step" },
          h("strong", {}, "What to do next: "),
          `check the workflow rules for the ${ticket} in ${psa} (or set its status by hand), `,
          "then press Confirm & post again. The retry resumes at the status change and never posts a second note.",
        ),
        code,
      );
      if (d.writeback_id) {
        // The ledger knows the target status's name.
        get(`/ai-sessions/${enc(sessionId)}/writebacks/${enc(d.writeback_id)}`)
          .then((entry) => {
            if (entry.target_status_name) fill(expectedName, `${entry.target_status_name} (#${d.expected_status_id})`);
          })
          .catch(() => {});
      }
      return;
    }
    if (error.code === "psa_note_visibility_mismatch") {
      outcome.className = "outcome outcome--danger";
      fill(
        outcome,
        h("p", { class: "outcome-title" }, "Act now: the note's visibility on the ticket is wrong"),
        h("p", {}, error.message),
        h(
          "p",
          { class: "next-step" },
          h("strong", {}, "What to do next: "),
          `open the ${ticket} in ${psa} and fix the note${d.note_id ? ` ${d.note_id}` : ""}'s visibility by hand. `,
          "The session was not closed.",
        ),
        code,
      );
      return;
    }
    const setup = setupProblem(error, session, d);
    if (setup) {
      outcome.className = "outcome outcome--error";
      fill(
        outcome,
        h("p", { class: "outcome-title" }, setup.title),
        h("p", { class: "reason" }, error.message),
        h("p", { class: "next-step" }, h("strong", {}, "What to do next: "), setup.next),
        code,
      );
      return;
    }
    if (error.code === "writeback_in_progress" && d.writeback_id) {
      // Another tab (or a reload) started it: follow it here rather than point at a panel that won't update.
      outcome.className = "outcome outcome--working";
      fill(outcome, h("p", { class: "outcome-title" }, "Another post of this session is running"), code);
      try {
        await poll({ writeback_id: d.writeback_id });
      } catch (followed) {
        await showError(followed);
      }
      return;
    }
    outcome.className = "outcome outcome--error";
    // "Not posted" only when nothing reached the ticket: a kept note, or one the PSA may have stored, says so.
    const onTicket = d.note_id || d.note_kept;
    const maybe = !onTicket && (d.note_may_be_on_ticket || d.may_have_applied);
    let title = error.status === 409 ? "Not posted: conflict" : error.status === 0 ? "Not posted: no connection" : "Not posted";
    if (onTicket || maybe) title = "The write-back did not finish";
    let next = null;
    if (error.code === "session_already_closed") {
      const fresh = await get(`/ai-sessions/${enc(sessionId)}`).catch(() => null);
      next = `This session is already ${fresh?.status ?? "closed"}; nothing more is sent.`;
    } else if (error.code === "writeback_in_progress") {
      next = "Another post of this session is running; reload this page to see its result under Last write-back.";
    } else if (error.status === 503 || error.status === 504 || error.status === 0) {
      const when = error.retryAfter ? `in ${error.retryAfter} seconds` : "in a moment";
      next = `${onTicket || maybe ? "" : "Nothing more was sent; "}try again ${when}.`;
    }
    fill(
      outcome,
      h("p", { class: "outcome-title" }, title),
      h("p", { class: "reason" }, error.message),
      onTicket
        ? h("p", {}, `The note is on the ${ticket}${d.note_id ? ` (note ${d.note_id})` : ""} and will not be posted twice.`)
        : maybe
          ? h("p", {}, "The note may already be on the ticket; posting again will not duplicate it.")
          : null,
      next ? h("p", { class: "next-step" }, next) : null,
      code,
    );
  }

  /** Refusals that a change of settings or ticket fixes (nothing was posted): {title, next}, or null. */
  function setupProblem(error, session, d) {
    const retry = " Then press Confirm & post again.";
    if (error.code === "psa_provider_mismatch") {
      const account = psaName(d.account_provider);
      return {
        title: "Not posted: the ticket is in another PSA",
        next: [
          `link this session to a ticket in ${account} under PSA ticket, or, if the account should post to `,
          `${psaName(d.ticket_provider ?? session.psa_ticket?.provider)}, change the connection in `,
          settingsLink("Settings"),
          `.${retry}`,
        ],
      };
    }
    if (error.code === "psa_not_configured") {
      return {
        title: "Not posted: a setting is missing",
        next: d.preference
          ? [`set ${preferenceLabel(d.preference)} (${d.preference}) under Status mapping in `, settingsLink("Settings"), `.${retry}`]
          : ["save the account's PSA connection in ", settingsLink("Settings"), `.${retry}`],
      };
    }
    if (error.code === "psa_visibility_unknown") {
      const pref = d.preference ? `${preferenceLabel(d.preference)} (${d.preference})` : "the publish value pin";
      return {
        title: `Not posted: ${ticketPsa(session)} does not say which note visibility to use`,
        next: [
          `of the values listed above, pick the one that makes this note `,
          `${state.kind === "escalation-package" ? "internal-only" : "customer-visible"} `,
          `and set it as ${pref} under Status mapping in `,
          settingsLink("Settings"),
          `.${retry}`,
        ],
      };
    }
    if (error.code === "psa_auth_failed") {
      return {
        title: `Not posted: ${ticketPsa(session)} refused the credentials`,
        next: [
          `check the API user and its keys or secret in ${ticketPsa(session)}, then save the connection again in `,
          settingsLink("Settings"),
          `.${retry}`,
        ],
      };
    }
    return null;
  }

  async function showLedger() {
    const session = getSession();
    const last = session.last_writeback;
    if (!last) {
      fill(ledger, h("p", { class: "hint" }, "Nothing posted yet."));
      return;
    }
    try {
      const entry = await get(`/ai-sessions/${enc(sessionId)}/writebacks/${enc(last.writeback_id)}`);
      fill(ledger, ledgerList(entry));
    } catch (error) {
      fill(ledger, h("p", { class: "error" }, error.message));
    }
  }

  function sessionChanged() {
    const session = getSession();
    for (const b of previewButtons) b.hidden = session.status !== "active";
    if (session.status !== "active" && !state.preview) {
      fill(panelMessage, `This session is ${session.status}.`);
    }
    updateStale();
    return showLedger();
  }

  return { section, sessionChanged };
}
