// The agent's JSON API (same origin, the session cookie goes with every request).
// The page never holds a token: the agent adds them on its side.

/** A refusal or failure from the agent, with its stable code and plain-words detail. */
export class ApiError extends Error {
  constructor(status, body) {
    const b = body && typeof body === 'object' ? body : {};
    super(typeof b.detail === 'string' && b.detail ? b.detail : `HTTP ${status}`);
    this.status = status;
    this.code = typeof b.code === 'string' ? b.code : (status === 0 ? 'agent_unreachable' : 'http_' + status);
    this.detail = typeof b.detail === 'string' ? b.detail : '';
    this.title = typeof b.title === 'string' ? b.title : '';
    this.body = b;
  }
}

// Codes after which the screen the user is on cannot carry on; main.js decides what to show.
const handlers = { noSession: null, notCompliant: null };

/** Register what happens when the session is gone or the laptop stops being compliant. */
export function onApiTrouble({ noSession, notCompliant }) {
  handlers.noSession = noSession;
  handlers.notCompliant = notCompliant;
}

async function request(path, { method = 'GET', body, accept = 'application/json' } = {}) {
  const init = {
    method,
    headers: { Accept: accept },
    credentials: 'same-origin',
    cache: 'no-store',
    referrerPolicy: 'no-referrer',
  };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (_) {
    throw new ApiError(0, { code: 'agent_unreachable' });
  }
  if (!response.ok) {
    let problem = null;
    try {
      problem = await response.json();
    } catch (_) {
      problem = null;
    }
    const error = new ApiError(response.status, problem);
    if (error.code === 'no_session' && handlers.noSession) handlers.noSession(error);
    if (error.code === 'device_not_compliant' && handlers.notCompliant) handlers.notCompliant(error);
    throw error;
  }
  return response;
}

/** A JSON request; resolves to the parsed body (null for 204). */
export async function api(path, options = {}) {
  const response = await request(path, options);
  if (response.status === 204) return null;
  return response.json();
}

/** GET the raw bytes of a document. */
export async function apiBytes(path) {
  const response = await request(path, { accept: '*/*' });
  return { contentType: response.headers.get('Content-Type') || '', buffer: await response.arrayBuffer() };
}

/** GET a text document. */
export async function apiText(path) {
  const response = await request(path, { accept: 'text/*' });
  return response.text();
}

export const paths = {
  state: '/api/state',
  signIn: '/api/sign-in',
  signOut: '/api/sign-out',
  deviceCheck: '/api/device-check',
  schedule: (day) => `/api/schedule?day=${encodeURIComponent(day)}`,
  rooms: '/api/rooms',
  lookup: (prisonNumber) => `/api/patients/lookup?prison_number=${encodeURIComponent(prisonNumber)}`,
  consultations: '/api/consultations',
  identityCheck: (id) => `/api/consultations/${encodeURIComponent(id)}/identity-check`,
  consent: (id) => `/api/consultations/${encodeURIComponent(id)}/consent`,
  cancel: (id) => `/api/consultations/${encodeURIComponent(id)}/cancel`,
  invites: (id) => `/api/consultations/${encodeURIComponent(id)}/invites`,
  records: (id) => `/api/consultations/${encodeURIComponent(id)}/records`,
  document: (id, doc) => `/api/consultations/${encodeURIComponent(id)}/documents/${encodeURIComponent(doc)}/content`,
  notes: (id) => `/api/consultations/${encodeURIComponent(id)}/notes`,
  noteVersions: (id, note) => `/api/consultations/${encodeURIComponent(id)}/notes/${encodeURIComponent(note)}/versions`,
  shares: (id) => `/api/consultations/${encodeURIComponent(id)}/shares`,
  signalling: '/api/signalling',
};
