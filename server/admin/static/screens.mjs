// One screen at a time: <section data-screen> elements, body[data-screen] names the one shown,
// its <h1> takes focus (so a screen reader starts there) and the live status is cleared.

import { $ } from './dom.mjs';

const TITLES = {
  loading: 'Opening',
  'sign-in': 'Sign in',
  'second-factor': 'Second sign-in step',
  enrol: 'Set up your second sign-in step',
  'recovery-codes': 'Your recovery codes',
  home: 'Overview',
  audit: 'Audit search',
  entry: 'Audit entry',
  'patient-accesses': "Who accessed a patient's record",
  reviews: 'Reviews',
  integrity: 'Audit integrity',
  devices: 'Devices',
  users: 'Users',
  consultations: 'Consultations',
};

export function currentScreen() {
  return document.body.dataset.screen;
}

export function show(name, { keepStatus = false, focus = true } = {}) {
  for (const section of document.querySelectorAll('main > section[data-screen]')) {
    section.hidden = section.dataset.screen !== name;
  }
  document.body.dataset.screen = name;
  document.title = `${TITLES[name] || 'Admin console'} · telemed admin`;
  if (!keepStatus) $('status').textContent = '';
  for (const link of document.querySelectorAll('[data-nav]')) {
    const here = link.dataset.nav === name || (name === 'entry' && link.dataset.nav === 'audit')
      || (name === 'patient-accesses' && link.dataset.nav === 'audit');
    if (here) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  if (focus) {
    const heading = document.querySelector(`section[data-screen="${name}"] h1`);
    if (heading) heading.focus();
  }
}
