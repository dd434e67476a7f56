// The console's JSON API, same origin, with the session cookie. Unsafe requests carry the
// CSRF token the server handed to this session (the browser adds Origin itself).

let csrfToken = null;
let onSignedOut = () => {};
let onActivity = () => {};

export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.detail) || `The server answered ${status}`);
    this.status = status;
    this.code = (body && body.code) || 'network_error';
    this.body = body || {};
  }
}

export function setCsrf(token) {
  csrfToken = token || null;
}

/** Called with the problem's code when the server says the session is gone. */
export function whenSignedOut(handler) {
  onSignedOut = handler;
}

/** Called with the session's idle deadline (seconds) after every answered request. */
export function whenActive(handler) {
  onActivity = handler;
}

const SIGNED_OUT = new Set(['authentication_required', 'session_expired']);

export async function api(method, path, body) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (method !== 'GET' && csrfToken) headers['X-CSRF-Token'] = csrfToken;
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'same-origin',
      cache: 'no-store',
      redirect: 'error',
    });
  } catch (error) {
    throw new ApiError(0, { code: 'network_error', detail: 'The server cannot be reached. Check the connection and try again.' });
  }
  let data = null;
  if (response.status !== 204) {
    try {
      data = await response.json();
    } catch (error) {
      data = null;
    }
  }
  if (!response.ok) {
    const failure = new ApiError(response.status, data);
    // A refused sign-in is not a lost session; anything else with these codes is.
    if (SIGNED_OUT.has(failure.code) && path !== '/admin/api/session') onSignedOut(failure);
    throw failure;
  }
  if (data && typeof data.csrf_token === 'string') setCsrf(data.csrf_token);
  if (data && data.session && typeof data.session.csrf_token === 'string') setCsrf(data.session.csrf_token);
  onActivity();
  return data;
}

export function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== '') search.set(key, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : '';
}
