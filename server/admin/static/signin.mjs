// Signing in: password, then the code from the phone (or a recovery code); on the first
// sign-in, setting up the authenticator app with a QR code and saving the recovery codes.

import { api } from './api.mjs';
import { $, el, clear, showError } from './dom.mjs';
import { show } from './screens.mjs';
import { problemWords } from './words.mjs';

let signedIn = () => {};

function busy(button, on) {
  button.disabled = on;
  button.setAttribute('aria-busy', on ? 'true' : 'false');
}

export function showSignIn(reason = '') {
  const lead = $('sign-in-reason');
  lead.textContent = reason;
  lead.hidden = !reason;
  // A shared hospital computer: nothing of the last person's sign-in stays in the boxes.
  $('sign-in-username').value = '';
  $('sign-in-password').value = '';
  showError($('sign-in-error'), '');
  show('sign-in');
  $('sign-in-username').focus();
}

async function signIn(event) {
  event.preventDefault();
  const username = $('sign-in-username').value.trim();
  const password = $('sign-in-password').value;
  const error = $('sign-in-error');
  if (!username || !password) {
    showError(error, 'Type your username and your password.');
    (username ? $('sign-in-password') : $('sign-in-username')).focus();
    return;
  }
  busy($('sign-in-submit'), true);
  try {
    const session = await api('POST', '/admin/api/session', { username, password });
    $('sign-in-password').value = '';
    await continueWith(session);
  } catch (failure) {
    $('sign-in-password').value = '';
    showError(error, problemWords(failure));
    $('sign-in-password').focus();
  } finally {
    busy($('sign-in-submit'), false);
  }
}

/** Go on from wherever the session stands. */
export async function continueWith(session) {
  if (session.stage === 'active') {
    signedIn(session);
  } else if (session.stage === 'second_factor') {
    showSecondFactor();
  } else {
    await showEnrol();
  }
}

function useRecovery(on) {
  $('use-recovery').setAttribute('aria-pressed', on ? 'true' : 'false');
  $('use-recovery').textContent = on ? 'Use the code from my phone' : 'I do not have my phone';
  $('code-field').hidden = on;
  $('recovery-field').hidden = !on;
  (on ? $('recovery-input') : $('code-input')).focus();
}

function showSecondFactor() {
  $('code-input').value = '';
  $('recovery-input').value = '';
  showError($('code-error'), '');
  show('second-factor');
  useRecovery(false);
}

async function sendCode(event) {
  event.preventDefault();
  const recovery = !$('recovery-field').hidden;
  const value = (recovery ? $('recovery-input') : $('code-input')).value.trim();
  const error = $('code-error');
  if (!value) {
    showError(error, recovery ? 'Type one of your recovery codes.' : 'Type the 6-digit code from your phone.');
    return;
  }
  busy($('code-submit'), true);
  try {
    const session = await api('POST', '/admin/api/session/second-factor', recovery ? { recovery_code: value } : { code: value });
    signedIn(session);
  } catch (failure) {
    if (failure.code === 'authentication_required' || failure.code === 'session_expired') {
      showSignIn('That took too long. Please sign in again.');
      return;
    }
    showError(error, problemWords(failure));
    const input = recovery ? $('recovery-input') : $('code-input');
    input.value = '';
    input.focus();
  } finally {
    busy($('code-submit'), false);
  }
}

async function showEnrol() {
  const offered = await api('GET', '/admin/api/enrolment');
  $('enrol-qr').src = offered.qr_svg_url;
  $('enrol-account').textContent = `${offered.issuer}: ${offered.account}`;
  // Grouped in fours, as apps show setup keys; the data attribute keeps the exact key.
  $('enrol-secret').textContent = offered.secret.match(/.{1,4}/g).join(' ');
  $('enrol-secret').dataset.secret = offered.secret;
  $('enrol-code').value = '';
  showError($('enrol-error'), '');
  show('enrol');
}

async function confirmEnrol(event) {
  event.preventDefault();
  const code = $('enrol-code').value.trim();
  if (!code) {
    showError($('enrol-error'), 'Type the 6-digit code the app shows now.');
    $('enrol-code').focus();
    return;
  }
  busy($('enrol-submit'), true);
  try {
    const done = await api('POST', '/admin/api/enrolment', { code });
    showRecoveryCodes(done.recovery_codes, done.session);
  } catch (failure) {
    showError($('enrol-error'), problemWords(failure));
    $('enrol-code').value = '';
    $('enrol-code').focus();
  } finally {
    busy($('enrol-submit'), false);
  }
}

let afterCodes = null;

function showRecoveryCodes(codes, session) {
  const list = clear($('recovery-list'));
  for (const code of codes) list.append(el('li', {}, el('code', { text: code, data: { recoveryCode: code } })));
  $('recovery-saved').checked = false;
  $('recovery-continue').disabled = true;
  afterCodes = session;
  show('recovery-codes');
}

export function bindSignIn({ onSignedIn }) {
  signedIn = onSignedIn;
  $('sign-in-form').addEventListener('submit', signIn);
  $('code-form').addEventListener('submit', sendCode);
  $('use-recovery').addEventListener('click', () => useRecovery($('recovery-field').hidden));
  $('code-cancel').addEventListener('click', async () => {
    try {
      await api('DELETE', '/admin/api/session');
    } catch (failure) {
      // Gone already: nothing to end.
    }
    showSignIn();
  });
  $('enrol-form').addEventListener('submit', confirmEnrol);
  $('recovery-saved').addEventListener('change', () => {
    $('recovery-continue').disabled = !$('recovery-saved').checked;
  });
  $('recovery-print').addEventListener('click', () => window.print());
  $('recovery-continue').addEventListener('click', () => {
    clear($('recovery-list'));
    const session = afterCodes;
    afterCodes = null;
    signedIn(session);
  });
}
