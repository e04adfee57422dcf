// The operator API as the back office calls it: the login's bearer token on every request,
// errors as exceptions carrying the server's own `{"error"}` message.

const TOKEN = "office.token";

export class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

export function token() { return localStorage.getItem(TOKEN); }

export async function login(username, password) {
  const reply = await call("POST", "/v1/auth/login", { username, password }, false);
  localStorage.setItem(TOKEN, reply.token);
  return reply;
}

export async function logout() {
  try { await call("POST", "/v1/auth/logout"); } finally { localStorage.removeItem(TOKEN); }
}

export async function call(method, path, body, authorised = true) {
  const headers = { Accept: "application/json" };
  if (authorised) headers.Authorization = `Bearer ${token()}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let reply;
  try {
    reply = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) {
    throw new ApiError(0, "network");
  }
  if (reply.status === 204) return null;
  const data = await reply.json().catch(() => null);
  if (!reply.ok) {
    if (reply.status === 401 && authorised) localStorage.removeItem(TOKEN);
    throw new ApiError(reply.status, (data && data.error) || `HTTP ${reply.status}`);
  }
  return data;
}

export const get = (path) => call("GET", path);
export const post = (path, body) => call("POST", path, body);
export const put = (path, body) => call("PUT", path, body);

/** A query string from an object, leaving out empty values. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") q.set(k, v);
  const s = q.toString();
  return s ? `?${s}` : "";
}
