// Account settings: the PSA connection (one body per provider; its secrets are write-only: GET never returns
// them) and each provider's preferences. What this screen reads or saves keeps `psa.js`'s account cache current.
import { get, put } from "../api.js";
import { append, field, fill, formatTime, h } from "../dom.js";
import { PSAS, psaName, rememberPsa } from "../psa.js";

// Each provider's connection body. `secret`: write-only (a password input, never filled from the API).
const CONNECTION_FIELDS = {
  connectwise: [
    {
      key: "site",
      label: "Site",
      required: true,
      hint: "Your Manage API host, for example api-na.myconnectwise.net (api-eu…, api-au… by region).",
    },
    { key: "company_id", label: "Company id", required: true, hint: "The company id you enter when you log in to Manage." },
    {
      key: "client_id",
      label: "Client id",
      required: true,
      hint: "Your integration's clientId, from developer.connectwise.com (Client IDs).",
    },
    {
      key: "public_key",
      label: "Public key",
      secret: true,
      hint: "System → Members → API Members → the API member → API Keys.",
    },
    { key: "private_key", label: "Private key", secret: true, hint: "Shown by Manage once, when the key pair is made." },
    {
      key: "base_url",
      label: "Base URL (optional)",
      url: true,
      hint: "Overrides the URL built from the site (a sandbox, the local simulator).",
    },
  ],
  autotask: [
    {
      key: "username",
      label: "API user (email)",
      required: true,
      email: true,
      hint: "The user name (an email) of the API-only resource in Autotask (security level API User).",
    },
    { key: "secret", label: "Secret", secret: true, hint: "The API user's password, set when the API user was made." },
    {
      key: "integration_code",
      label: "Integration code",
      secret: true,
      hint: "The API user's API Tracking Identifier (its integration code).",
    },
    {
      key: "base_url",
      label: "Zone URL (optional)",
      url: true,
      hint: "For example https://webservices5.autotask.net/ATServicesRest/. Empty: looked up from the API user.",
    },
  ],
  halopsa: [
    {
      key: "base_url",
      label: "Instance URL",
      required: true,
      url: true,
      hint: "The root of your Halo, for example https://acme.halopsa.com (without /api).",
    },
    {
      key: "client_id",
      label: "Client id",
      required: true,
      hint: "Configuration → Integrations → HaloPSA API → View Applications: an application using Client ID and Secret (Services).",
    },
    { key: "client_secret", label: "Client secret", secret: true, hint: "Shown by Halo with the application's client id." },
    {
      key: "tenant",
      label: "Tenant (optional)",
      hint: "Only for hosted instances that need it: the tenant name on Halo's API details page.",
    },
  ],
};

const PUBLISH_HINT =
  'Leave both empty: the note\'s visibility is chosen by label ("All Autotask Users" for a resolution, the one ' +
  'label containing "Internal" for an escalation). Set them only when a post stops with psa_visibility_unknown: ' +
  "its message lists your tenant's publish values to choose from.";

// Each provider's preferences. `board`: a per-board map; `requiredToPost`: a post is refused while it is empty.
const PREFERENCE_FIELDS = {
  connectwise: [
    {
      key: "cw_resolved_status_id",
      label: "Resolved status id",
      hint: "The ConnectWise status a resolution note moves the ticket to. Empty: post the note, leave the status.",
    },
    { key: "cw_escalated_status_id", label: "Escalated status id" },
    {
      key: "cw_resolved_status_ids_by_board",
      label: "Resolved status per board",
      board: true,
      hint: 'One "board = status" per line; a board listed here wins over the account default.',
    },
    { key: "cw_escalated_status_ids_by_board", label: "Escalated status per board", board: true },
  ],
  autotask: [
    {
      key: "autotask_resolved_status_id",
      label: "Resolved status id",
      hint: "The value of the Autotask ticket status a resolution moves the ticket to. Empty: post the note, leave the status.",
    },
    { key: "autotask_escalated_status_id", label: "Escalated status id" },
    {
      key: "autotask_resolution_note_type_id",
      label: "Resolution note type id",
      hint: "The note type's value in Autotask. Empty: Autotask's default note type.",
    },
    { key: "autotask_escalation_note_type_id", label: "Escalation note type id" },
    { key: "autotask_public_publish_value", label: "Customer-visible publish value (pin)", hint: PUBLISH_HINT },
    { key: "autotask_internal_publish_value", label: "Internal publish value (pin)" },
  ],
  halopsa: [
    {
      key: "halo_resolved_status_id",
      label: "Resolved status id",
      hint: "The HaloPSA status a resolution moves the ticket to. Empty: post the note, leave the status.",
    },
    { key: "halo_escalated_status_id", label: "Escalated status id" },
    {
      key: "halo_resolution_outcome_id",
      label: "Resolution outcome id (required to post)",
      requiredToPost: true,
      hint: "Halo records every note as an action with an outcome: the id of one from Configuration → Tickets → Actions.",
    },
    { key: "halo_escalation_outcome_id", label: "Escalation outcome id (required to post)", requiredToPost: true },
  ],
};

const MAPPING_HINTS = {
  connectwise: "Which ConnectWise status a post moves the ticket to; checked against the ticket's board.",
  autotask:
    "Which Autotask status a post moves the ticket to (checked against Autotask's active statuses), and the type and visibility of its notes.",
  halopsa:
    "Which HaloPSA status a post moves the ticket to (checked against the ticket type's statuses), and the outcome each note is recorded with.",
};

/** The label a preference has on this screen (for messages elsewhere that point here). */
export function preferenceLabel(key) {
  for (const fields of Object.values(PREFERENCE_FIELDS)) {
    const found = fields.find((f) => f.key === key);
    if (found) return found.label.replace(/ \(.*\)$/, "");
  }
  return key;
}

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

function checkUrl(value, label) {
  if (value && !/^https?:\/\/[^\s/?#]+(\/\S*)?$/i.test(value)) {
    throw new Error(`${label}: "${value}" is not a URL; start it with https://.`);
  }
}

function describedBy(input, ...ids) {
  const current = (input.getAttribute("aria-describedby") || "").split(" ");
  input.setAttribute("aria-describedby", [...current, ...ids].filter(Boolean).join(" "));
}

/** A provider's connection fields: {fieldset, inputs: [[definition, input]]}, filled from the saved view. */
function connectionFields(provider, psa, secretNoteId) {
  const saved = psa.configured && psa.provider === provider ? psa : {};
  const inputs = CONNECTION_FIELDS[provider].map((def) => {
    const control = def.secret
      ? h("input", { type: "password", autocomplete: "off", required: true })
      : text(saved[def.key], { required: def.required, inputmode: def.url ? "url" : def.email ? "email" : null });
    const { row, input } = field(def.label, control, def.hint);
    if (def.secret) describedBy(input, secretNoteId);
    return { def, input, row };
  });
  const fieldset = h(
    "fieldset",
    { class: "provider-fields" },
    h("legend", {}, `${PSAS[provider].name} connection`),
    inputs.map((entry) => entry.row),
  );
  return { fieldset, inputs };
}

function connectionForm(psa, { onSaved, onProviderChange }) {
  let saved = psa;
  const providerHint = h("p", { class: "hint", id: "psa-provider-hint" });
  const select = h(
    "select",
    { id: "psa-provider", "aria-describedby": providerHint.id },
    Object.entries(PSAS).map(([value, info]) => h("option", { value }, info.name)),
  );
  select.value = PSAS[psa.provider] ? psa.provider : "connectwise";
  const providerRow = h("div", { class: "field" }, h("label", { for: select.id }, "PSA"), select, providerHint);
  const secretNote = h("p", { class: "hint", id: "psa-secret-note" });
  const sets = Object.fromEntries(Object.keys(PSAS).map((p) => [p, connectionFields(p, psa, secretNote.id)]));
  const slot = h("div", { class: "provider-slot" });
  const message = h("p", { class: "form-message", role: "status" });

  function show() {
    const chosen = select.value;
    fill(slot, sets[chosen].fieldset);
    const current = saved.configured ? saved.provider : null;
    if (!current) {
      fill(providerHint, "The PSA this account posts notes to. The fields below change with it.");
      providerHint.className = "hint";
    } else if (current === chosen) {
      fill(providerHint, `The account is connected to ${PSAS[current]?.name ?? current}.`);
      providerHint.className = "hint";
    } else {
      fill(
        providerHint,
        `The account is connected to ${PSAS[current]?.name ?? current}. Saving replaces that connection: sessions `,
        `linked to ${psaName(current)} tickets can't be posted until they are linked to ${psaName(chosen)} tickets.`,
      );
      providerHint.className = "hint hint--warn";
    }
    fill(
      secretNote,
      current === chosen
        ? "Stored secrets are never shown, not even here: enter them again to save a change."
        : "Secrets go to the secret store and are never shown again, not even here.",
    );
    onProviderChange(chosen);
  }
  select.addEventListener("change", () => {
    fill(message);
    show();
  });

  const form = h(
    "form",
    {
      class: "card form-grid",
      onsubmit: async (event) => {
        event.preventDefault();
        const chosen = select.value;
        const body = { provider: chosen };
        try {
          for (const { def, input } of sets[chosen].inputs) {
            const value = def.secret ? input.value : input.value.trim();
            if (!value && !def.required && !def.secret) continue; // optional and empty: not sent
            if (def.url) checkUrl(value, def.label);
            if (def.email && !value.includes("@")) throw new Error(`${def.label}: "${value}" is not an email address.`);
            body[def.key] = value;
          }
        } catch (error) {
          fill(message, h("span", { class: "error" }, error.message));
          return;
        }
        fill(message, "Saving…");
        try {
          const result = await put("/account-settings/psa-connection", body);
          for (const set of Object.values(sets)) {
            for (const { def, input } of set.inputs) if (def.secret) input.value = "";
          }
          saved = result.psa;
          rememberPsa(result.psa);
          show();
          fill(message, "Connection saved.");
          onSaved(result);
        } catch (error) {
          fill(message, h("span", { class: "error" }, error.message));
        }
      },
    },
    providerRow,
    slot,
    secretNote,
    h("div", { class: "actions" }, h("button", { type: "submit", class: "button button--primary" }, "Save connection")),
    message,
  );
  return { form, show };
}

/** A provider's preference fields, filled from `preferences`; `read()` gives their values or throws a message. */
function preferenceFields(provider) {
  const inputs = PREFERENCE_FIELDS[provider].map((def) => {
    const control = def.board ? h("textarea", { rows: "3" }) : text("", { inputmode: "numeric" });
    return { def, ...field(def.label, control, def.hint) };
  });
  const fieldset = h(
    "fieldset",
    { class: "provider-fields" },
    h("legend", {}, PSAS[provider].name),
    inputs.map((entry) => entry.row),
  );
  return {
    fieldset,
    load(preferences) {
      for (const { def, input } of inputs) {
        const value = preferences[def.key];
        input.value = def.board ? mapToLines(value) : (value ?? "");
      }
    },
    read() {
      const values = {};
      for (const { def, input } of inputs) {
        values[def.key] = def.board ? linesToMap(input.value, def.label) : optionalInt(input.value, def.label);
      }
      return values;
    },
    missingToPost(preferences) {
      return inputs.filter(({ def }) => def.requiredToPost && preferences[def.key] == null).map(({ def }) => def);
    },
  };
}

function preferencesForm(preferences) {
  let current = preferences;
  let provider = "connectwise";
  const sets = Object.fromEntries(Object.keys(PSAS).map((p) => [p, preferenceFields(p)]));
  const load = () => {
    for (const set of Object.values(sets)) set.load(current);
    notify.checked = current.notify_customer_on_resolve !== false;
  };
  const notify = h("input", { type: "checkbox", id: "notify-customer", "aria-describedby": "notify-customer-hint" });
  const notifyRow = h(
    "div",
    { class: "field field--check" },
    notify,
    h("label", { for: notify.id }, "Notify the customer when a resolution is posted"),
    h(
      "p",
      { class: "hint", id: "notify-customer-hint" },
      "ConnectWise and HaloPSA email the customer about the resolution note. It does not apply to Autotask, ",
      "whose API sends no email for a note. Escalations never notify.",
    ),
  );
  const hint = h("p", { class: "hint" });
  const slot = h("div", { class: "provider-slot" });
  const message = h("p", { class: "form-message", role: "status" });
  load();

  const form = h(
    "form",
    {
      class: "card form-grid",
      onsubmit: async (event) => {
        event.preventDefault();
        let body;
        try {
          // The other providers' preferences (and any field this form does not edit) stay as they are.
          body = { ...current, ...sets[provider].read(), notify_customer_on_resolve: notify.checked };
        } catch (error) {
          fill(message, h("span", { class: "error" }, error.message));
          return;
        }
        fill(message, "Saving…");
        try {
          const saved = await put("/account-settings/preferences", body);
          current = saved.preferences;
          load();
          const missing = sets[provider].missingToPost(current);
          fill(
            message,
            "Status mapping saved.",
            missing.length
              ? h(
                  "span",
                  { class: "warn" },
                  ` ${PSAS[provider].name} refuses notes until ${missing.map((d) => preferenceLabel(d.key)).join(" and ")} `,
                  missing.length > 1 ? "are set." : "is set.",
                )
              : null,
          );
        } catch (error) {
          fill(message, h("span", { class: "error" }, error.message));
        }
      },
    },
    slot,
    notifyRow,
    h("div", { class: "actions" }, h("button", { type: "submit", class: "button button--primary" }, "Save status mapping")),
    message,
  );

  function show(chosen) {
    if (chosen === provider && slot.firstChild) return;
    provider = chosen;
    fill(message);
    fill(hint, MAPPING_HINTS[chosen]);
    fill(slot, sets[chosen].fieldset);
  }
  return { elements: [hint, form], show };
}

function connectionSummary(psa) {
  if (!psa.configured) {
    return [
      h("span", { class: "badge badge--escalated" }, "not connected"),
      " No PSA connection yet: sessions can't be linked to tickets.",
    ];
  }
  const details = {
    connectwise: [psa.site, psa.company_id && `company ${psa.company_id}`],
    autotask: [psa.username, psa.base_url ? `zone ${psa.base_url}` : "zone looked up from the API user"],
    halopsa: [psa.base_url, psa.tenant && `tenant ${psa.tenant}`],
  }[psa.provider] || [];
  const parts = [PSAS[psa.provider]?.name ?? psa.provider, ...details];
  if (psa.updated_at) parts.push(`saved ${formatTime(psa.updated_at)}`);
  return [h("span", { class: "badge badge--resolved" }, "connected"), ` ${parts.filter(Boolean).join(" · ")}`];
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
  rememberPsa(settings.psa);
  const summary = h("p", { class: "connection-state" }, connectionSummary(settings.psa));
  const preferences = preferencesForm(settings.preferences);
  const connection = connectionForm(settings.psa, {
    onSaved: (saved) => fill(summary, connectionSummary(saved.psa)),
    onProviderChange: preferences.show,
  });
  connection.show();
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
        connection.form,
      ),
      h(
        "section",
        { class: "panel", "aria-labelledby": "mapping-heading" },
        h("h2", { id: "mapping-heading" }, "Status mapping"),
        preferences.elements,
      ),
    ),
  );
  return "Settings";
}
