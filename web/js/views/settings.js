// Account settings: the PSA connection (keys are write-only: GET never returns them) and status mapping.
import { get, put } from "../api.js";
import { append, field, fill, formatTime, h } from "../dom.js";

function text(value, attrs = {}) {
  return h("input", { type: "text", autocomplete: "off", value: value ?? "", ...attrs });
}

/** "2 = 25" lines <-> {"2": 25}. */
function mapToLines(map) {
  return Object.entries(map || {})
    .map(([board, status]) => `${board} = ${status}`)
    .join("\n");
}

function linesToMap(value, label) {
  const map = {};
  for (const raw of value.split("\n")) {
    const line = raw.trim();
    if (!line) continue;
    const match = line.match(/^(\d{1,10})\s*[=:]\s*(\d{1,10})$/);
    if (!match) throw new Error(`${label}: "${line}" is not "board = status".`);
    map[match[1]] = Number(match[2]);
  }
  return map;
}

function optionalInt(value, label) {
  const trimmed = value.trim();
  if (!trimmed) return null;
  if (!/^\d{1,10}$/.test(trimmed)) throw new Error(`${label}: "${trimmed}" is not a number.`);
  return Number(trimmed);
}

function connectionForm(psa, onSaved) {
  const provider = field("Provider", h("select", {}, h("option", { value: "connectwise" }, "ConnectWise Manage")));
  const site = field("Site", text(psa.site, { required: true }), "For example api-na.myconnectwise.net");
  const company = field("Company id", text(psa.company_id, { required: true }));
  const clientId = field("Client id", text(psa.client_id, { required: true }));
  const keyHint = psa.configured
    ? "Stored keys are never shown; enter both keys again to save a change."
    : "Kept in the secret store; never shown again.";
  const publicKey = field("Public key", h("input", { type: "password", autocomplete: "off", required: true }), keyHint);
  const privateKey = field("Private key", h("input", { type: "password", autocomplete: "off", required: true }));
  const baseUrl = field("Base URL (optional)", text(psa.base_url), "Overrides the URL built from the site.");
  const message = h("p", { class: "form-message", role: "status" });
  const form = h(
    "form",
    {
      class: "card form-grid",
      onsubmit: async (event) => {
        event.preventDefault();
        const body = {
          provider: provider.input.value,
          site: site.input.value,
          company_id: company.input.value,
          client_id: clientId.input.value,
          public_key: publicKey.input.value,
          private_key: privateKey.input.value,
        };
        if (baseUrl.input.value.trim()) body.base_url = baseUrl.input.value.trim();
        fill(message, "Saving…");
        try {
          const saved = await put("/account-settings/psa-connection", body);
          publicKey.input.value = "";
          privateKey.input.value = "";
          fill(message, "Connection saved.");
          onSaved(saved);
        } catch (error) {
          fill(message, h("span", { class: "error" }, error.message));
        }
      },
    },
    provider.row,
    site.row,
    company.row,
    clientId.row,
    publicKey.row,
    privateKey.row,
    baseUrl.row,
    h("div", { class: "actions" }, h("button", { type: "submit", class: "button button--primary" }, "Save connection")),
    message,
  );
  return form;
}

function preferencesForm(preferences) {
  const resolved = field(
    "Resolved status id",
    text(preferences.cw_resolved_status_id, { inputmode: "numeric" }),
    "The ConnectWise status a resolution note moves the ticket to. Empty: post the note, leave the status.",
  );
  const escalated = field(
    "Escalated status id",
    text(preferences.cw_escalated_status_id, { inputmode: "numeric" }),
  );
  const resolvedByBoard = field(
    "Resolved status per board",
    h("textarea", { rows: "3", value: mapToLines(preferences.cw_resolved_status_ids_by_board) }),
    'One "board = status" per line; a board listed here wins over the account default.',
  );
  const escalatedByBoard = field(
    "Escalated status per board",
    h("textarea", { rows: "3", value: mapToLines(preferences.cw_escalated_status_ids_by_board) }),
  );
  const message = h("p", { class: "form-message", role: "status" });
  let current = preferences;
  return h(
    "form",
    {
      class: "card form-grid",
      onsubmit: async (event) => {
        event.preventDefault();
        let body;
        try {
          // Keep the preferences this form does not edit (other providers' settings) as they are.
          body = {
            ...current,
            cw_resolved_status_id: optionalInt(resolved.input.value, "Resolved status id"),
            cw_escalated_status_id: optionalInt(escalated.input.value, "Escalated status id"),
            cw_resolved_status_ids_by_board: linesToMap(resolvedByBoard.input.value, "Resolved status per board"),
            cw_escalated_status_ids_by_board: linesToMap(escalatedByBoard.input.value, "Escalated status per board"),
          };
        } catch (error) {
          fill(message, h("span", { class: "error" }, error.message));
          return;
        }
        fill(message, "Saving…");
        try {
          const saved = await put("/account-settings/preferences", body);
          current = saved.preferences;
          fill(message, "Status mapping saved.");
        } catch (error) {
          fill(message, h("span", { class: "error" }, error.message));
        }
      },
    },
    resolved.row,
    escalated.row,
    resolvedByBoard.row,
    escalatedByBoard.row,
    h("div", { class: "actions" }, h("button", { type: "submit", class: "button button--primary" }, "Save status mapping")),
    message,
  );
}

export async function renderSettings(view, isCurrent) {
  append(view, h("div", { class: "page-head" }, h("h1", { tabindex: "-1" }, "Settings")));
  let settings;
  try {
    settings = await get("/account-settings");
  } catch (error) {
    append(view, h("p", { class: "error", role: "alert" }, error.message));
    return "Settings";
  }
  if (!isCurrent()) return "Settings";
  const summary = h("p", { class: "connection-state" });
  const showState = (psa) =>
    fill(
      summary,
      psa.configured
        ? [
            h("span", { class: "badge badge--resolved" }, "connected"),
            ` ${psa.provider} · ${psa.site}${psa.updated_at ? ` · saved ${formatTime(psa.updated_at)}` : ""}`,
          ]
        : [h("span", { class: "badge badge--escalated" }, "not connected"), " No PSA connection yet."],
    );
  showState(settings.psa);
  append(
    view,
    h(
      "div",
      { class: "settings-grid" },
      h(
        "section",
        { class: "panel", "aria-labelledby": "psa-heading" },
        h("h2", { id: "psa-heading" }, "PSA connection"),
        summary,
        connectionForm(settings.psa, (saved) => showState(saved.psa)),
      ),
      h(
        "section",
        { class: "panel", "aria-labelledby": "mapping-heading" },
        h("h2", { id: "mapping-heading" }, "Status mapping"),
        h("p", { class: "hint" }, "Which ConnectWise status a post moves the ticket to; checked against the ticket's board."),
        preferencesForm(settings.preferences),
      ),
    ),
  );
  return "Settings";
}
