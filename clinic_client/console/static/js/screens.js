// Screens, the status region and small DOM helpers. Text only ever goes in through
// textContent: nothing from the server is parsed as HTML.

export const $ = (id) => document.getElementById(id);

/** Build an element: h('button', {type: 'button', className: 'control', dataset: {x: 1}}, 'Text'). */
export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'className') node.className = value;
    else if (key === 'dataset') Object.assign(node.dataset, value);
    else if (key === 'text') node.textContent = value;
    else if (key.startsWith('on') && typeof value === 'function') node.addEventListener(key.slice(2), value);
    else if (key === 'hidden' || key === 'disabled' || key === 'checked' || key === 'selected') node[key] = Boolean(value);
    else if (key === 'value') node.value = value;
    else node.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** Remove every child of a node. */
export function clear(node) {
  while (node.firstChild) node.firstChild.remove();
}

const SCREENS = ['loading', 'signin', 'device-check', 'schedule', 'book', 'prepare', 'call', 'message'];
const TITLES = {
  loading: 'Opening',
  signin: 'Sign in',
  'device-check': 'Laptop check',
  schedule: "Today's consultations",
  book: 'Book a consultation',
  prepare: 'Before the consultation',
  call: 'Consultation',
  message: 'Telemed',
};

let leaveHooks = [];

/** Run `fn` once when the current screen is left (timers, sockets). */
export function onLeaveScreen(fn) {
  leaveHooks.push(fn);
}

/** Show one screen, name it for tests, and move focus to its heading. */
export function show(screen, { focus = true, title } = {}) {
  if (!SCREENS.includes(screen)) throw new Error(`unknown screen ${screen}`);
  const previous = document.body.dataset.screen;
  if (previous !== screen) {
    const hooks = leaveHooks;
    leaveHooks = [];
    for (const fn of hooks) {
      try {
        fn();
      } catch (err) {
        console.warn('leaving a screen failed', err);
      }
    }
  }
  for (const section of document.querySelectorAll('main > section[data-screen]')) {
    section.hidden = section.dataset.screen !== screen;
  }
  document.body.dataset.screen = screen;
  // What the status region said belonged to the screen before.
  if (previous !== screen) announce('');
  if (screen !== 'message') delete document.body.dataset.message;
  document.title = `${title || TITLES[screen]} – Telemed clinician console`;
  if (focus) focusHeading(screen);
}

/** Focus the visible h1 of a screen so screen readers start there. */
export function focusHeading(screen = document.body.dataset.screen) {
  const heading = document.querySelector(`section[data-screen="${screen}"] h1`);
  if (heading) heading.focus({ preventScroll: false });
}

/** Say what changed in the live region (polite; "warning" tone looks different but reads the same). */
let announceTimer = null;

export function announce(text, tone = 'info') {
  const status = $('status');
  // Clear then set, so repeating the same sentence is read again.
  window.clearTimeout(announceTimer);
  status.textContent = '';
  status.dataset.tone = tone;
  if (text) announceTimer = window.setTimeout(() => { status.textContent = text; }, 30);
}

export const MESSAGES = {
  no_session: {
    title: 'Open the console from the laptop’s Telemed shortcut',
    body: 'This window is not connected to the Telemed program on this laptop.',
    hint: 'Close this window and open Telemed again from the shortcut on the desktop.',
  },
  agent_unreachable: {
    title: 'The Telemed program on this laptop has stopped',
    body: 'This window cannot reach the Telemed program that runs on this laptop.',
    hint: 'Close this window and open Telemed again from the shortcut on the desktop.',
    action: 'Try again',
  },
  ended: {
    title: 'The consultation has ended',
    body: 'The call is over for everyone. The patient’s records are closed on this laptop.',
    hint: 'Your note was kept if you saved it.',
    action: "Back to today's consultations",
  },
  consultation_over: {
    title: 'This consultation is not taking place',
    body: 'It has already ended or has been cancelled.',
    hint: '',
    action: "Back to today's consultations",
  },
  join_failed: {
    title: 'We could not open the call',
    body: 'The Telemed service did not let this laptop join the consultation.',
    hint: 'Check the laptop again, then try once more. If it keeps happening, call the IT service desk.',
    action: "Back to today's consultations",
  },
  connection_lost: {
    title: 'The connection to the call was lost',
    body: 'This laptop could not stay connected to the consultation.',
    hint: 'Check the laptop’s mobile connection, then open the consultation again from today’s list.',
    action: "Back to today's consultations",
  },
  replaced: {
    title: 'The consultation is open in another window',
    body: 'You opened this consultation somewhere else, so this window has stopped.',
    hint: '',
    action: "Back to today's consultations",
  },
  signed_out: {
    title: 'You have signed out',
    body: 'Nobody can use this console until someone signs in again.',
    hint: '',
    action: 'Sign in',
  },
  camera_refused: {
    title: 'The camera and microphone are blocked',
    body: 'The patient needs to see and hear you, but the browser is not allowed to use the camera and microphone.',
    hint: 'Choose the camera symbol in the address bar, allow the camera and microphone, then press Try again.',
    action: 'Try again',
  },
  camera_missing: {
    title: 'No camera or microphone found',
    body: 'This laptop’s camera or microphone is not working.',
    hint: 'Plug in a headset or call the IT service desk, then press Try again.',
    action: 'Try again',
  },
  server_error: {
    title: 'Something went wrong',
    body: 'The console had a problem.',
    hint: 'Wait a moment, then press Try again.',
    action: 'Try again',
  },
};

let messageAction = null;

/** The message screen: a heading, what happened, what to do, and at most one button. */
export function showMessage(kind, { hint, body, onAction } = {}) {
  const m = MESSAGES[kind] || MESSAGES.server_error;
  $('message-title').textContent = m.title;
  $('message-body').textContent = body || m.body;
  $('message-hint').textContent = hint !== undefined ? hint : m.hint;
  const button = $('message-action');
  messageAction = onAction || null;
  if (m.action && onAction) {
    button.textContent = m.action;
    button.hidden = false;
  } else {
    button.hidden = true;
  }
  show('message', { title: m.title });
  document.body.dataset.message = kind;
}

export function bindMessageAction() {
  $('message-action').addEventListener('click', () => {
    const action = messageAction;
    messageAction = null;
    if (action) action();
  });
}

/** Plain words for an API error that has no better place; never the raw server text for 5xx. */
export function plainError(err, fallback = 'That did not work. Please try again.') {
  if (!err) return fallback;
  if (err.code === 'agent_unreachable') return 'The Telemed program on this laptop is not answering. Open Telemed again from the desktop shortcut.';
  if (err.code === 'server_unreachable' || err.status === 502 || err.status === 503 || err.status === 504) {
    return 'We cannot reach the Telemed service. Check that the laptop’s mobile connection is on, then try again.';
  }
  if (err.code === 'device_not_compliant') return 'This laptop has not passed its security check, so this cannot be done now.';
  if (err.status >= 400 && err.status < 500 && err.detail) return err.detail;
  return fallback;
}
