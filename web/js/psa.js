// The PSAs the back end speaks and the account's own, shared by every view that names a PSA or links a ticket
// (kept apart from the settings screen so the sessions list does not load it).
import { get } from "./api.js";
import * as auth from "./auth.js";

/** The PSAs the back end speaks (DESIGN §7): the full name, the short one in labels, the ticket field. */
export const PSAS = {
  connectwise: { name: "ConnectWise Manage", short: "ConnectWise", ticketLabel: "ConnectWise ticket number" },
  autotask: {
    name: "Autotask",
    short: "Autotask",
    ticketLabel: "Autotask ticket id",
    ticketHint: "The ticket's id (a number), not its T… ticket number.",
  },
  halopsa: { name: "HaloPSA", short: "HaloPSA", ticketLabel: "HaloPSA ticket number" },
};

export function psaName(provider) {
  return PSAS[provider]?.short ?? String(provider);
}

let psaCache = { account: null, promise: null };

/** The account's saved PSA connection (`psa` of GET /account-settings), fetched once per account. */
export function accountPsa() {
  const account = auth.account();
  if (psaCache.account !== account || !psaCache.promise) {
    const promise = get("/account-settings").then((settings) => settings.psa);
    psaCache = { account, promise };
    promise.catch(() => {
      if (psaCache.promise === promise) psaCache = { account: null, promise: null }; // ask again next time
    });
  }
  return psaCache.promise;
}

/** What the settings screen just read or saved: the cache follows it. */
export function rememberPsa(psa) {
  psaCache = { account: auth.account(), promise: Promise.resolve(psa) };
}
