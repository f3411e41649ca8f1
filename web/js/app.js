// The engineer's console: boot, header (account picker or signed-in user), and hash routing.
//   #/                     sessions (?status=&cursor=)
//   #/sessions/<id>        one session: evidence, fixes, preview, post, outcome, ledger
//   #/settings             PSA connection and status mapping
import * as auth from "./auth.js";
import { fill, h } from "./dom.js";

const main = document.getElementById("main");
let renderToken = 0;

function parseRoute() {
  const raw = location.hash.startsWith("#/") ? location.hash.slice(1) : "/";
  const [path, query = ""] = raw.split("?");
  return { path, params: new URLSearchParams(query) };
}

async function route() {
  const { path, params } = parseRoute();
  const token = ++renderToken;
  const view = h("div", { class: "view" });
  // A navigation that lands while an older view is still loading wins: the older one is dropped.
  const isCurrent = () => token === renderToken;
  const session = path.match(/^\/sessions\/([A-Za-z0-9_-]{1,64})$/);
  // Each screen's module loads when first shown: the first load carries only the screen it opens on.
  let title;
  if (session) {
    const { renderSession } = await import("./views/session.js");
    title = await renderSession(view, session[1], isCurrent);
  } else if (path === "/settings") {
    const { renderSettings } = await import("./views/settings.js");
    title = await renderSettings(view, isCurrent);
  } else {
    const { renderSessions } = await import("./views/sessions.js");
    title = await renderSessions(view, params, isCurrent);
  }
  if (!isCurrent()) return;
  fill(main, view);
  document.title = `${title} · FlowPilot console`;
  markCurrentNav(path, params);
  const heading = main.querySelector("h1");
  if (heading && document.activeElement === document.body) heading.focus({ preventScroll: true });
}

function markCurrentNav(path, params) {
  const current =
    path === "/settings" ? "settings" : path === "/" && params.get("status") === "escalated" ? "queue" : "sessions";
  for (const link of document.querySelectorAll("[data-nav]")) {
    if (link.dataset.nav === current) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

function renderIdentity() {
  const slot = document.getElementById("identity");
  if (auth.mode() === "cognito") {
    fill(
      slot,
      h("span", { class: "who" }, auth.userLabel(), " · ", auth.account()),
      h("button", { type: "button", class: "button button--quiet", onclick: () => auth.logout() }, "Sign out"),
    );
    return;
  }
  const select = h(
    "select",
    {
      id: "account-picker",
      onchange: () => {
        auth.setAccount(select.value);
        location.hash = "#/";
        route();
      },
    },
    auth.LOCAL_ACCOUNTS.map((name) => h("option", { value: name }, name)),
  );
  if (!auth.LOCAL_ACCOUNTS.includes(auth.account())) select.append(h("option", { value: auth.account() }, auth.account()));
  select.value = auth.account();
  fill(
    slot,
    h("label", { for: "account-picker" }, "Account"),
    select,
    h("span", { class: "env-tag", title: "Identity comes from X-Dev-Account-Id" }, "local stack"),
  );
}

async function boot() {
  await auth.loadConfig();
  try {
    if (!(await auth.ensureSignedIn())) return; // on the way to the managed login
  } catch (error) {
    fill(main, h("div", { class: "view" }, h("h1", {}, "Sign-in failed"), h("p", { class: "error" }, error.message)));
    return;
  }
  renderIdentity();
  document.querySelector(".skip-link").addEventListener("click", (event) => {
    event.preventDefault();
    main.focus();
  });
  window.addEventListener("hashchange", route);
  await route();
}

boot();
