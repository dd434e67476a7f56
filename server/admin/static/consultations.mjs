// The day's consultations across clinicians; cancel one that has not started, or record a no-show.

import { api, query } from './api.mjs';
import { $, el, clear, clock, longDay, todayIso, button, announce } from './dom.mjs';
import { ask } from './dialog.mjs';
import { show } from './screens.mjs';
import { problemWords, stateWords } from './words.mjs';

let day = null;

async function close(c, kind) {
  const cancel = kind === 'cancel';
  const answer = await ask({
    title: cancel ? `Cancel the ${clock(c.scheduled_start)} consultation?` : `Record that the ${clock(c.scheduled_start)} consultation did not take place?`,
    body: `${c.host_name} with patient ${c.prison_number}. Anyone waiting in it is told it is over.`,
    confirm: cancel ? 'Cancel the consultation' : 'Record a no-show',
    danger: true,
    cancel: 'Keep it',
    input: cancel ? { label: 'Why it is cancelled', hint: 'For example: patient transferred.', required: true } : null,
    kind,
  });
  if (!answer) return;
  try {
    const path = cancel ? 'cancel' : 'no-show';
    await api('POST', `/admin/api/consultations/${encodeURIComponent(c.id)}/${path}`, cancel ? { reason: answer.text } : undefined);
    await openConsultations(null, { keepStatus: true });
    announce(cancel ? 'The consultation is cancelled.' : 'The no-show is recorded.');
  } catch (failure) {
    announce(problemWords(failure), 'warning');
  }
}

function table(items) {
  const head = el('tr', {}, ['Time', 'State', 'Clinician', 'Patient', 'Where', 'Actions'].map((t) => el('th', { text: t, attrs: { scope: 'col' } })));
  const rows = items.map((c) => el(
    'tr',
    { data: { consultationId: c.id, state: c.state } },
    el('th', { attrs: { scope: 'row' }, text: `${clock(c.scheduled_start)}–${clock(c.scheduled_end)}` }),
    el('td', { class: `state state-${c.state}`, text: stateWords(c.state) }),
    el('td', { text: c.host_name }),
    el('td', { class: 'mono', text: c.prison_number }),
    el('td', { text: [c.room_name, c.specialist_name ? `Specialist: ${c.specialist_name}` : null].filter(Boolean).join(' · ') || '—' }),
    el('td', {}, el('div', { class: 'actions tight' },
      c.can_cancel ? button('Cancel…', () => close(c, 'cancel'), { small: true, attrs: { 'aria-label': `Cancel the ${clock(c.scheduled_start)} consultation` } }) : null,
      c.can_mark_no_show ? button('No-show…', () => close(c, 'no_show'), { small: true, attrs: { 'aria-label': `No-show: the ${clock(c.scheduled_start)} consultation` } }) : null,
      !c.can_cancel && !c.can_mark_no_show ? '—' : null)),
  ));
  return el('table', { class: 'grid' }, el('caption', { text: `${items.length} consultation${items.length === 1 ? '' : 's'}` }), el('thead', {}, head), el('tbody', {}, rows));
}

export async function openConsultations(_params, { keepStatus = false } = {}) {
  day = day || todayIso();
  $('day-input').value = day;
  // Days are UTC days on the server; near midnight the local day may differ by one.
  const items = await api('GET', `/admin/api/consultations${query({ day })}`);
  $('day-title').textContent = longDay(day);
  clear($('consultations-table')).append(items.length ? table(items) : el('p', { class: 'empty', text: 'No consultation is booked for this day.' }));
  show('consultations', { keepStatus, focus: !keepStatus });
}

export function bindConsultations() {
  $('day-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    day = $('day-input').value || todayIso();
    try {
      await openConsultations(null, { keepStatus: true });
      $('day-title').focus();
    } catch (failure) {
      announce(problemWords(failure), 'warning');
    }
  });
}
