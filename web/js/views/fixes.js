// Suggested fixes and the engineer's four decisions (one_off, draft_template, build_template, dismissed).
import { ApiError, enc, get, post } from "../api.js";
import { append, field, fill, formatTime, h } from "../dom.js";

const DECISIONS = [
  ["one_off", "Run once", "button button--primary"],
  ["draft_template", "Save as draft template", "button"],
  ["build_template", "Build a template", "button"],
  ["dismissed", "Dismiss", "button button--quiet"],
];
const DECISION_LABELS = {
  one_off: "run once",
  draft_template: "saved as a draft template",
  build_template: "sent to the template builder",
  dismissed: "dismissed",
};

/** The decision response, old shape ({fix, decision, …}) or DESIGN §3's ({id, user_decision, …} at the top). */
export function normalizeDecision(data, fixId) {
  return {
    id: data.id ?? data.fix?.id ?? fixId,
    user_decision: data.user_decision ?? data.decision ?? data.fix?.user_decision,
    rendered_script: data.rendered_script ?? null,
    redirect_path: data.redirect_path ?? null,
    draft_template_id: data.draft_template_id ?? null,
  };
}

function copyButton(getText) {
  const note = h("span", { class: "copy-result", role: "status" });
  const button = h(
    "button",
    {
      type: "button",
      class: "button button--small",
      onclick: async () => {
        try {
          await navigator.clipboard.writeText(getText());
          fill(note, "Copied");
        } catch {
          fill(note, "Copy failed: select the script and copy it by hand.");
        }
      },
    },
    "Copy script",
  );
  return h("span", { class: "copy" }, button, note);
}

function scriptBlock(label, text) {
  // Focusable: a long script scrolls sideways, and keyboard users must be able to scroll it.
  return h("figure", { class: "script" }, h("figcaption", {}, label), h("pre", { tabindex: "0" }, h("code", {}, text)));
}

function renderedScript(decision) {
  if (!decision.rendered_script) return null;
  const text = decision.rendered_script;
  return h(
    "div",
    { class: "rendered" },
    scriptBlock("Rendered script (parameters filled in; shown once, not stored)", text),
    copyButton(() => text),
    decision.draft_template_id ? h("p", { class: "hint" }, `Draft template ${decision.draft_template_id} queued.`) : null,
  );
}

function fixCard(sessionId, fix, { active, onDecided }) {
  const card = h("li", { class: "card fix", id: `fix-${fix.id}`, tabindex: "-1" });
  const decided = fix.user_decision || fix.superseded_at;
  const meta = h(
    "p",
    { class: "fix-meta" },
    h("span", { class: "confidence" }, `Confidence ${fix.confidence_pct}%`),
    fix.user_decision
      ? h("span", { class: "badge badge--decided" }, DECISION_LABELS[fix.user_decision] || fix.user_decision)
      : fix.superseded_at
        ? h("span", { class: "badge badge--superseded" }, "superseded")
        : h("span", { class: "badge badge--active" }, "awaiting decision"),
  );
  append(card, h("h3", {}, fix.title), meta);
  if (fix.description) append(card, h("p", { class: "fix-description" }, fix.description));
  if (fix.ai_drafted_script) append(card, scriptBlock(`Drafted script (${fix.script_language})`, fix.ai_drafted_script));
  else if (fix.script_template_id) append(card, h("p", {}, "Script template ", h("code", {}, fix.script_template_id)));
  const params = Object.entries(fix.ai_drafted_parameters || {});
  if (params.length) {
    append(
      card,
      h(
        "dl",
        { class: "params" },
        params.map(([name, value]) => [h("dt", {}, name), h("dd", {}, h("code", {}, value))]),
      ),
    );
  }
  if (fix.decided_at) {
    append(card, h("p", { class: "hint" }, `Decided by ${fix.decided_by} at ${formatTime(fix.decided_at)}.`));
  }
  if (decided || !active) return card;

  // Secret parameters are never stored: the engineer types them for this one render.
  const secrets = (fix.sensitive_parameters || []).map((name) =>
    field(`Value for ${name}`, h("input", { type: "password", autocomplete: "off", dataset: { param: name } })),
  );
  const message = h("p", { class: "form-message", role: "status" });
  const buttons = DECISIONS.map(([decision, label, cls]) =>
    h(
      "button",
      {
        type: "button",
        class: cls,
        onclick: async () => {
          const parameters = {};
          for (const secret of secrets) if (secret.input.value) parameters[secret.input.dataset.param] = secret.input.value;
          for (const b of buttons) b.disabled = true;
          fill(message, "Recording the decision…");
          try {
            const { data } = await post(`/ai-sessions/${enc(sessionId)}/suggested-fixes/${enc(fix.id)}/decision`, {
              decision,
              parameters,
            });
            const result = normalizeDecision(data, fix.id);
            if (result.redirect_path) {
              location.assign(result.redirect_path); // build_template: the full template builder
              return;
            }
            const updated = { ...fix, ...(data.fix || {}), user_decision: result.user_decision, decided_at: null };
            const next = fixCard(sessionId, updated, { active, onDecided });
            card.replaceWith(next);
            if (result.rendered_script) {
              next.append(renderedScript(result));
              next.querySelector(".copy button").focus();
            } else {
              next.focus();
            }
            await onDecided();
          } catch (error) {
            for (const b of buttons) b.disabled = false;
            fill(message, h("span", { class: "error" }, error instanceof ApiError ? error.message : String(error)));
          }
        },
      },
      label,
    ),
  );
  append(
    card,
    secrets.map((s) => s.row),
    h("div", { class: "actions", role: "group", "aria-label": `Decision on ${fix.title}` }, buttons),
    message,
  );
  return card;
}

/** The fixes list (paginated when the API pages it: limit, cursor, next_cursor). */
export function fixesSection(sessionId, { active, onDecided }) {
  const list = h("ul", { class: "fix-list" });
  const more = h("div", { class: "pager" });
  const message = h("p", { class: "form-message" });
  const section = h(
    "section",
    { class: "panel", "aria-labelledby": "fixes-heading" },
    h("h2", { id: "fixes-heading" }, "Suggested fixes"),
    message,
    list,
    more,
  );

  async function load(cursor) {
    const query = new URLSearchParams({ limit: "10" });
    if (cursor) query.set("cursor", cursor);
    let page;
    try {
      page = await get(`/ai-sessions/${enc(sessionId)}/suggested-fixes?${query}`);
    } catch (error) {
      fill(message, h("span", { class: "error" }, error.message));
      return;
    }
    for (const fix of page.items) {
      list.append(fixCard(sessionId, fix, { active, onDecided }));
    }
    if (!list.childElementCount) fill(message, "No suggested fixes for this session.");
    fill(
      more,
      page.next_cursor
        ? h("button", { type: "button", class: "button", onclick: () => load(page.next_cursor) }, "More fixes")
        : null,
    );
  }
  return { section, load };
}
