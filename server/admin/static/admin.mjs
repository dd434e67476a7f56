// The admin console: finds where this browser's session stands, then shows one screen at a
// time. Screens are reached by the address (#/audit, #/devices…) so Back works; the session
// idles out after the server's idle timeout, with a warning a minute before.

import { api, whenActive, whenSignedOut } from './api.mjs';
import { openAudit, openEntry, openPatientAccesses, bindAudit } from './audit.mjs';
import { openConsultations, bindConsultations } from './consultations.mjs';
import { openDevices, bindDevices } from './devices.mjs';
import { bindDialog } from './dialog.mjs';
import { $, announce } from './dom.mjs';
import { openHome } from './home.mjs';
import { openIntegrity, bindIntegrity } from './integrity.mjs';
import { openReviews, bindReviews } from './reviews.mjs';
import { show } from './screens.mjs';
import { bindSignIn, continueWith, showSignIn } from './signin.mjs';
import { openUsers, bindUsers } from './users.mjs';
import { problemWords } from './words.mjs';

const ROUTES = {
  home: openHome,
  audit: openAudit,
  entry: openEntry,
  'patient-accesses': openPatientAccesses,
  reviews: openReviews,
  integrity: openIntegrity,
  devices: openDevices,
  users: openUsers,
  consultations: openConsultations,
};

let session = null;
let idleSeconds = 0;
let warnTimer = null;
let outTimer = null;

function route() {
  const hash = location.hash.replace(/^#\/?/, '');
  const [name, search] = hash.split('?');
  return { name: ROUTES[name] ? name : 'home', params: new URLSearchParams(search || '') };
}

async function render() {
  if (!session) return;
  const { name, params } = route();
  try {
    await ROUTES[name](params);
  } catch (failure) {
    if (failure.code === 'authentication_required' || failure.code === 'session_expired') return;
    show(name, { focus: false });
    announce(problemWords(failure), 'warning');
  }
}

function signedInAs(active) {
  session = active;
  idleSeconds = active.idle_timeout_s;
  $('who').textContent = `Signed in as ${active.user.display_name}`;
  $('account').hidden = false;
  $('nav').hidden = false;
  restartIdleClock();
  if (!location.hash || location.hash === '#' || location.hash === '#/') location.hash = '#/home';
  else render();
}

function signedOut(message) {
  session = null;
  clearTimeout(warnTimer);
  clearTimeout(outTimer);
  const idle = $('idle-dialog');
  if (idle.open) idle.close();
  const dialog = $('dialog');
  if (dialog.open) dialog.close();
  $('account').hidden = true;
  $('nav').hidden = true;
  showSignIn(message);
}

function restartIdleClock() {
  clearTimeout(warnTimer);
  clearTimeout(outTimer);
  if (!session || !idleSeconds) return;
  const warnAfter = Math.max(idleSeconds - 60, 1) * 1000;
  warnTimer = setTimeout(() => {
    const idle = $('idle-dialog');
    if (!idle.open) idle.showModal();
    $('idle-stay').focus();
    outTimer = setTimeout(() => {
      signedOut('You were signed out because nothing happened for a while. Please sign in again.');
    }, Math.min(60, idleSeconds) * 1000);
  }, warnAfter);
}

async function signOut() {
  try {
    await api('DELETE', '/admin/api/session');
  } catch (failure) {
    // Already ended on the server: the outcome is the same.
  }
  signedOut('You have signed out.');
}

function bind() {
  bindDialog();
  bindSignIn({ onSignedIn: signedInAs });
  bindAudit();
  bindReviews();
  bindIntegrity();
  bindDevices();
  bindUsers();
  bindConsultations();
  $('sign-out').addEventListener('click', signOut);
  $('idle-stay').addEventListener('click', async () => {
    $('idle-dialog').close();
    try {
      await api('GET', '/admin/api/session');
    } catch (failure) {
      // whenSignedOut has taken over.
    }
  });
  $('idle-leave').addEventListener('click', () => {
    $('idle-dialog').close();
    signOut();
  });
  $('idle-dialog').addEventListener('cancel', (event) => event.preventDefault());
  window.addEventListener('hashchange', render);
  whenActive(restartIdleClock);
  whenSignedOut((failure) => {
    const reason = failure.body && failure.body.reason;
    signedOut(reason === 'idle'
      ? 'You were signed out because nothing happened for a while. Please sign in again.'
      : 'Your session has ended. Please sign in again.');
  });
}

async function start() {
  bind();
  try {
    const current = await api('GET', '/admin/api/session');
    await continueWith(current);
  } catch (failure) {
    showSignIn(failure.code === 'session_expired' ? 'Your session has ended. Please sign in again.' : '');
  }
}

start();
