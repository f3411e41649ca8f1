// Markdown to DOM: marked parses, DOMPurify sanitizes, and only then does HTML reach the page.
// Both are vendored (web/vendor/, pinned npm releases) and loaded on first use, so the sessions list
// does not pay for them. Raw HTML in the markdown is shown as text, not markup: the PSA shows a note's
// text as typed, and hostile evidence (`<img onerror=…>`) never becomes an element, not even in
// DOMPurify's inert parse (where Chromium would still report the handler to the CSP).

let ready = null;

const ENTITIES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
const escapeHtml = (text) => String(text).replace(/[&<>"']/g, (c) => ENTITIES[c]);

function load() {
  ready ??= Promise.all([
    import("../vendor/marked-18.2.1/marked.esm.js"),
    // A UMD build: imported for its effect, it defines globalThis.DOMPurify.
    import("../vendor/dompurify-3.5.0/purify.min.js"),
  ]).then(([{ Marked }]) => {
    const purify = globalThis.DOMPurify;
    // Links from notes open nowhere surprising: no javascript:, and new tabs cannot reach back.
    purify.addHook("afterSanitizeAttributes", (node) => {
      if (node.tagName === "A") {
        node.setAttribute("rel", "noopener noreferrer");
        node.setAttribute("target", "_blank");
      }
    });
    const marked = new Marked({ gfm: true, async: false, renderer: { html: ({ text }) => escapeHtml(text) } });
    return { marked, purify };
  });
  return ready;
}

/** Render `markdown` into `target` (replacing its children). Safe for hostile text. */
export async function renderMarkdown(target, markdown) {
  const { marked, purify } = await load();
  const html = marked.parse(String(markdown ?? ""));
  const fragment = purify.sanitize(html, {
    RETURN_DOM_FRAGMENT: true,
    FORBID_TAGS: ["style", "form", "input", "button", "textarea", "select", "img"],
    FORBID_ATTR: ["style"],
  });
  target.replaceChildren(fragment);
}
