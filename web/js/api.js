// The HTTP API on this origin (DESIGN §3). Errors come back as ApiError with the server's message.
import { identityHeaders, onUnauthorized } from "./auth.js";

export class ApiError extends Error {
  constructor(status, code, message, details, retryAfter = null) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details || {};
    this.retryAfter = retryAfter; // seconds, from a 503's Retry-After header
  }
}

/** `{"error": {code, message, details}}`, or the resolver's 422 `detail` list, as one message. */
function errorFrom(status, body) {
  if (body && body.error && typeof body.error === "object") {
    return new ApiError(status, body.error.code || "error", body.error.message || `HTTP ${status}`, body.error.details);
  }
  if (body && Array.isArray(body.detail)) {
    const message = body.detail
      .map((d) => {
        const where = Array.isArray(d.loc) ? d.loc.filter((part) => part !== "body").join(".") : "";
        return where ? `${where}: ${d.msg}` : d.msg;
      })
      .join("; ");
    return new ApiError(status, "validation_error", message || "The request was not valid.", { detail: body.detail });
  }
  const unknown = status >= 500 ? " Reload the page and check Last write-back before trying again." : "";
  return new ApiError(status, "http_error", `The API answered ${status} without an explanation.${unknown}`);
}

/** Returns {status, data}; throws ApiError for 4xx/5xx and for a network failure (status 0). */
export async function request(method, path, body) {
  const headers = { Accept: "application/json", ...identityHeaders() };
  const init = { method, headers, cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch {
    throw new ApiError(0, "network_error", "Could not reach the API. Check your connection and try again.");
  }
  const text = await response.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (response.status === 401) onUnauthorized();
  if (!response.ok) {
    const error = errorFrom(response.status, data);
    const seconds = Number.parseInt(response.headers.get("Retry-After") ?? "", 10);
    if (Number.isFinite(seconds) && seconds >= 0) error.retryAfter = seconds;
    throw error;
  }
  return { status: response.status, data };
}

export const get = (path) => request("GET", path).then((r) => r.data);
export const post = (path, body) => request("POST", path, body);
export const put = (path, body) => request("PUT", path, body).then((r) => r.data);

export const enc = encodeURIComponent;
