// Today's consultations: time, patient, prison number, date of birth, room, status, and the
// one next step for each row.

import { api, paths } from './api.js';
import { app, go, route } from './app.js';
import { formatDate, formatDay, formatTime, isoDay } from './format.js';
import { $, announce, clear, h, onLeaveScreen, plainError, show } from './screens.js';

const REFRESH_MS = 30000;

const STATE_WORDS = {
  scheduled: 'Booked',
  open: 'Call open',
  live: 'In progress',
  ended: 'Finished',
  cancelled: 'Cancelled',
  no_show: 'Did not take place',
};

/** What the clinician does next with this consultation, or null when nothing is left to do. */
export function nextStep(c) {
  if (c.state === 'live') return { action: 'call', label: 'Return to the call' };
  if (c.state === 'scheduled' || c.state === 'open') {
    if (!c.identity_confirmed_at || !c.consent_recorded_at) return { action: 'prepare', label: 'Get ready' };
    return { action: 'call', label: 'Open the call' };
  }
  return null;
}

function statusCell(c) {
  const words = STATE_WORDS[c.state] || c.state;
  const cell = h('td', { className: 'status-cell' }, h('span', { className: `state state-${c.state}` }, words));
  if (c.state === 'scheduled' || c.state === 'open') {
    const done = [];
    if (c.identity_confirmed_at) done.push('identity checked');
    if (c.consent_recorded_at) done.push('consent given');
    if (done.length) cell.append(h('span', { className: 'sub' }, done.join(', ').replace(/^./, (x) => x.toUpperCase())));
  }
  return cell;
}

function row(c) {
  const patient = c.patient || {};
  const step = nextStep(c);
  const stepCell = h('td', { className: 'step-cell' });
  if (step) {
    stepCell.append(h('button', {
      type: 'button',
      className: step.action === 'call' ? 'control primary small' : 'control small',
      dataset: { action: step.action },
      'aria-label': `${step.label}: ${patient.name || 'patient'} at ${formatTime(c.scheduled_start)}`,
      onclick: () => {
        app.consultation = c;
        go(step.action, c);
      },
    }, step.label));
  } else {
    stepCell.append(h('span', { className: 'sub' }, 'Nothing to do'));
  }
  return h('tr', { dataset: { consultationId: c.id, state: c.state } },
    h('td', { className: 'time' }, formatTime(c.scheduled_start), h('span', { className: 'sub' }, `to ${formatTime(c.scheduled_end)}`)),
    h('th', { scope: 'row', className: 'patient' }, patient.name || ''),
    h('td', {}, patient.prison_number || ''),
    h('td', {}, formatDate(patient.date_of_birth)),
    h('td', {}, c.room ? (c.room.display_name || c.room.id) : (c.specialist_name ? `No room (with ${c.specialist_name})` : 'No room')),
    statusCell(c),
    stepCell);
}

function render(list) {
  const rows = $('schedule-rows');
  clear(rows);
  for (const c of list) rows.append(row(c));
  $('schedule-table').hidden = list.length === 0;
  $('schedule-empty').hidden = list.length !== 0;
}

async function load({ quiet = false } = {}) {
  const box = $('schedule-error');
  try {
    const list = await api(paths.schedule(isoDay()));
    app.schedule = Array.isArray(list) ? list : [];
    box.hidden = true;
    // Do not pull the rows from under someone who is using them; the next refresh will do.
    if (quiet && $('schedule-table').contains(document.activeElement)) return;
    render(app.schedule);
  } catch (err) {
    if (err.code === 'no_session' || err.code === 'device_not_compliant') return;
    box.textContent = plainError(err, 'Today’s consultations could not be loaded. Please wait a moment; the list tries again by itself.');
    box.hidden = false;
    if (!quiet) render(app.schedule);
  }
}

async function open({ announceText } = {}) {
  $('schedule-day').textContent = formatDay(new Date());
  show('schedule');
  await load();
  if (announceText) announce(announceText);
  const timer = setInterval(() => {
    if (document.body.dataset.screen === 'schedule') load({ quiet: true });
  }, REFRESH_MS);
  onLeaveScreen(() => clearInterval(timer));
}

export function bindSchedule() {
  $('schedule-book').addEventListener('click', () => go('book'));
  route('schedule', open);
}
