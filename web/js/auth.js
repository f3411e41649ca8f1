// Who the console calls the API as.
// local mode (the default, web/config.json {"mode": "local"}): the account picker's X-Dev-Account-Id.
// cognito mode (written by `make web-deploy`): the Cognito managed login, authorization code + PKCE,
// and the ID token (it carries custom:account_id) as `Authorization: Bearer`.

const ACCOUNT_KEY = "flowpilot.account";
const TOKEN_KEY = "flowpilot.id_token";
const PKCE_KEY = "flowpilot.pkce";
export const LOCAL_ACCOUNTS = ["acct-dev", "acct-autotask", "acct-halo"];

let config = { mode: "local" };

export async function loadConfig() {
  try {
    const response = await fetch("config.json", { cache: "no-store" });
    if (response.ok) config = { mode: "local", ...(await response.json()) };
  } catch {
    // No config.json: the local stack's defaults.
  }
  return config;
}

export function mode() {
  return config.mode === "cognito" ? "cognito" : "local";
}

export function account() {
  if (mode() === "cognito") return claims()?.["custom:account_id"] || "";
  return localStorage.getItem(ACCOUNT_KEY) || LOCAL_ACCOUNTS[0];
}

export function setAccount(value) {
  localStorage.setItem(ACCOUNT_KEY, value);
}

/** Headers that say who is calling. */
export function identityHeaders() {
  if (mode() === "cognito") {
    const token = sessionStorage.getItem(TOKEN_KEY);
    return token ? { Authorization: `Bearer ${token}` } : {};
  }
  return { "X-Dev-Account-Id": account() };
}

function base64url(bytes) {
  let text = "";
  for (const byte of bytes) text += String.fromCharCode(byte);
  return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function randomString() {
  return base64url(crypto.getRandomValues(new Uint8Array(32)));
}

function claims() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (!token) return null;
  try {
    const payload = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const bytes = Uint8Array.from(atob(payload), (c) => c.charCodeAt(0));
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    return null;
  }
}

export function userLabel() {
  const c = claims();
  return c ? c.email || c["cognito:username"] || c.sub : "";
}

function tokenValid() {
  const c = claims();
  return Boolean(c && typeof c.exp === "number" && c.exp * 1000 > Date.now() + 30_000);
}

/** Send the browser to the managed login (PKCE: the verifier stays in this tab's sessionStorage). */
export async function login() {
  const { domain, client_id: clientId, redirect_uri: redirectUri } = config.cognito;
  const verifier = randomString();
  const state = randomString();
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier));
  sessionStorage.setItem(PKCE_KEY, JSON.stringify({ verifier, state, hash: location.hash }));
  const query = new URLSearchParams({
    response_type: "code",
    client_id: clientId,
    redirect_uri: redirectUri,
    scope: "openid email profile",
    code_challenge_method: "S256",
    code_challenge: base64url(new Uint8Array(digest)),
    state,
  });
  location.assign(`${domain}/oauth2/authorize?${query}`);
}

export function logout() {
  sessionStorage.removeItem(TOKEN_KEY);
  const { domain, client_id: clientId, redirect_uri: redirectUri } = config.cognito;
  location.assign(`${domain}/logout?${new URLSearchParams({ client_id: clientId, logout_uri: redirectUri })}`);
}

/**
 * In cognito mode: finish a login redirect (?code=&state=) or start one. Resolves true when signed in.
 * The token endpoint is called on this origin (`token_endpoint`, CloudFront's /oauth2/token behaviour),
 * so the CSP's connect-src 'self' holds in AWS too.
 */
export async function ensureSignedIn() {
  if (mode() !== "cognito") return true;
  const params = new URLSearchParams(location.search);
  if (params.has("code")) {
    const saved = JSON.parse(sessionStorage.getItem(PKCE_KEY) || "{}");
    sessionStorage.removeItem(PKCE_KEY);
    if (!saved.state || saved.state !== params.get("state")) throw new Error("The sign-in answer did not match this tab.");
    const response = await fetch(config.cognito.token_endpoint || "/oauth2/token", {
      method: "POST",
      headers: { "Content-Type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({
        grant_type: "authorization_code",
        client_id: config.cognito.client_id,
        code: params.get("code"),
        redirect_uri: config.cognito.redirect_uri,
        code_verifier: saved.verifier,
      }),
    });
    if (!response.ok) throw new Error(`Sign-in failed (${response.status}).`);
    const tokens = await response.json();
    sessionStorage.setItem(TOKEN_KEY, tokens.id_token);
    history.replaceState(null, "", `${location.pathname}${saved.hash || "#/"}`);
  }
  if (tokenValid()) return true;
  await login();
  return false;
}

/** The API said 401: the token expired or was revoked. */
export function onUnauthorized() {
  if (mode() === "cognito") {
    sessionStorage.removeItem(TOKEN_KEY);
    login();
  }
}
