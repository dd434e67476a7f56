// The clinician's console: start here. Asks the agent who is signed in and how the laptop
// stands, then opens the right screen. Screens: docs/console.md ("Screens").

import { api, onApiTrouble, paths } from './api.js';
import { app, go, route } from './app.js';
import { bindBooking } from './booking.js';
import { bindCall, inCall } from './call.js';
import { bindDeviceCheck } from './devicecheck.js';
import { ask, bindDialog } from './dialog.js';
import { bindPrepare } from './prepare.js';
import { $, announce, bindMessageAction, show, showMessage } from './screens.js';
import { applyState, bindSignIn, showLaptopState } from './signin.js';
import { bindSchedule } from './schedule.js';

function postureFresh(posture) {
  if (!posture || !posture.compliant) return false;
  return !posture.expires_at || Date.parse(posture.expires_at) > Date.now() + 30000;
}

async function boot() {
  let state;
  try {
    state = await api(paths.state);
  } catch (err) {
    if (err.code === 'no_session') return undefined;   // handled by onApiTrouble
    return showMessage(err.code === 'agent_unreachable' ? 'agent_unreachable' : 'server_error', { onAction: () => boot() });
  }
  applyState(state);
  if (!state.signed_in) return go('signin');
  if (postureFresh(state.posture)) return go('schedule');
  return go('device-check', { run: true });
}

async function signOut() {
  if (inCall()) {
    const answer = await ask({
      title: 'Sign out now?',
      body: 'You will leave the call. The consultation is not ended: the others wait until you come back.',
      confirm: 'Sign out',
      cancel: 'Stay in the call',
      danger: true,
      kind: 'sign-out',
    });
    if (!answer) return;
  }
  try {
    await api(paths.signOut, { method: 'POST' });
  } catch (_) {
    // Signed out or not, the page forgets who was here.
  }
  show('loading', { focus: false });   // leaves the call screen (its hooks hang up)
  applyState({ signed_in: false, user: null, posture: null });
  app.schedule = [];
  app.consultation = null;
  showMessage('signed_out', { onAction: () => go('signin') });
}

function init() {
  bindDialog();
  bindMessageAction();
  bindSignIn();
  bindDeviceCheck();
  bindSchedule();
  bindBooking();
  bindPrepare();
  bindCall();
  route('failure', (err) => {
    if (err && err.code === 'no_session') return;
    if (err && err.code === 'device_not_compliant') return;
    showMessage(err && err.code === 'agent_unreachable' ? 'agent_unreachable' : 'server_error', { onAction: () => boot() });
  });
  onApiTrouble({
    noSession: () => {
      $('account').hidden = true;
      showMessage('no_session');
    },
    notCompliant: () => {
      // The agent refuses everything but the check while the laptop is not compliant.
      if (inCall()) return;   // the call screen says it itself (agent.posture / suspended)
      app.posture = app.posture && app.posture.compliant ? { ...app.posture, compliant: false } : app.posture;
      showLaptopState();
      announce('This laptop no longer passes its security check.', 'warning');
      go('device-check', { run: true });
    },
  });
  $('sign-out').addEventListener('click', signOut);
  boot();
}

init();
