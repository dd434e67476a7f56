// Sign in: username and password, with the reasons it can fail said in plain words.

import { api, paths } from './api.js';
import { app, go, route } from './app.js';
import { $, show } from './screens.js';

function signInError(err) {
  switch (err.code) {
    case 'invalid_credentials':
      return 'The username or password is not right. Check them and try again.';
    case 'login_throttled':
    case 'account_locked': {
      const seconds = Number(err.body && err.body.retry_after_s);
      const minutes = Number.isFinite(seconds) && seconds > 0 ? Math.ceil(seconds / 60) : null;
      const wait = minutes === null ? 'a few minutes'
        : minutes === 1 ? '1 minute' : `${minutes} minutes`;
      return err.code === 'login_throttled'
        ? `Too many sign-in attempts. Try again in ${wait}.`
        : `This account is locked after too many wrong passwords. Try again in ${wait}, or ask your healthcare admin to unlock it.`;
    }
    case 'not_a_clinician':
      return 'Only clinicians can use this console. Sign in with a clinician’s account.';
    case 'agent_unreachable':
      return 'The Telemed program on this laptop is not answering. Open Telemed again from the desktop shortcut.';
    case 'server_unreachable':
      return 'We cannot reach the Telemed service. Check that the laptop’s mobile connection is on, then try again.';
    default:
      if (err.status === 502 || err.status === 503 || err.status === 504) {
        return 'We cannot reach the Telemed service. Check that the laptop’s mobile connection is on, then try again.';
      }
      return 'Signing in did not work. Please try again.';
  }
}

function setError(text, code) {
  const box = $('signin-error');
  box.textContent = text || '';
  box.hidden = !text;
  box.dataset.code = code || '';
  for (const id of ['signin-username', 'signin-password']) {
    if (text && code === 'invalid_credentials') $(id).setAttribute('aria-invalid', 'true');
    else $(id).removeAttribute('aria-invalid');
  }
}

export function applyState(state) {
  app.user = state.user || null;
  app.device = state.device || null;
  if ('posture' in state) app.posture = state.posture;
  const account = $('account');
  account.hidden = !app.user;
  $('account-name').textContent = app.user ? (app.user.display_name || app.user.username) : '';
  showLaptopState();
}

/** The small "This laptop: ready / not ready" line in the banner. */
export function showLaptopState() {
  const line = $('laptop-state');
  const p = app.posture;
  line.dataset.compliant = p ? String(Boolean(p.compliant)) : '';
  line.textContent = !p ? 'Laptop not checked yet' : p.compliant ? 'Laptop checked: ready' : 'Laptop not ready';
}

function open() {
  setError('');
  $('signin-password').value = '';
  show('signin');
}

async function submit(event) {
  event.preventDefault();
  const username = $('signin-username').value.trim();
  const password = $('signin-password').value;
  if (!username || !password) {
    setError('Enter your username and your password.', 'missing');
    (username ? $('signin-password') : $('signin-username')).focus();
    return;
  }
  const button = $('signin-submit');
  button.disabled = true;
  button.textContent = 'Signing in…';
  try {
    const state = await api(paths.signIn, { method: 'POST', body: { username, password } });
    $('signin-password').value = '';
    setError('');
    applyState(state);
    await go('device-check', { run: true });
  } catch (err) {
    $('signin-password').value = '';
    setError(signInError(err), err.code);
    $('signin-password').focus();
  } finally {
    button.disabled = false;
    button.textContent = 'Sign in';
  }
}

export function bindSignIn() {
  $('signin-form').addEventListener('submit', submit);
  route('signin', open);
}
