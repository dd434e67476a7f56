// Audit search (paged, newest first), one entry in full, and who accessed a patient's record.

import { api, query } from './api.mjs';
import { $, el, clear, facts, showError, when, button, announce } from './dom.mjs';
import { auditTable } from './rows.mjs';
import { show } from './screens.mjs';
import { actionWords, outcomeWords, problemWords, purposeWords, roleWords } from './words.mjs';

const FIELDS = ['patient', 'user', 'device', 'action', 'outcome', 'from', 'to'];
const PAGE = 25;
const COLUMNS = ['when', 'who', 'what', 'outcome', 'patient', 'consultation', 'purpose', 'device'];

// The search as last run, and the cursors of the pages before this one (Newer goes back).
let filters = {};
let cursors = [];
let cursor = null;
let nextCursor = null;

function formFilters() {
  const values = {};
  for (const name of FIELDS) {
    const value = $(`audit-${name}`).value.trim();
    if (value) values[name] = value;
  }
  return values;
}

function fillForm(values) {
  for (const name of FIELDS) $(`audit-${name}`).value = values[name] || '';
}

function exportLinks(csvLink, fhirLink, values, scope = 'entries') {
  csvLink.href = `/admin/api/audit/export${query({ ...values, scope, format: 'csv' })}`;
  fhirLink.href = `/admin/api/audit/export${query({ ...values, scope, format: 'fhir' })}`;
}

function patientButton(row) {
  if (!row.patient_id) return null;
  const label = row.prison_number || row.patient_id.slice(0, 8);
  return button(`Who accessed ${label}’s record`, () => {
    location.hash = `#/patient-accesses?patient=${encodeURIComponent(row.patient_id)}`;
  }, { small: true, data: { accessesFor: row.patient_id } });
}

async function runSearch() {
  const page = await api('GET', `/admin/api/audit/entries${query({ ...filters, cursor, limit: PAGE })}`);
  nextCursor = page.next_cursor;
  const rows = page.entries;
  const table = clear($('audit-table'));
  const count = rows.length === 0 ? 'No entries match.' : `${rows.length} ${rows.length === 1 ? 'entry' : 'entries'}, newest first${cursors.length ? ` (page ${cursors.length + 1})` : ''}.`;
  $('audit-results-title').textContent = rows.length === 0 ? 'No entries match' : 'Results';
  if (rows.length) {
    table.append(auditTable(rows, {
      caption: count,
      columns: COLUMNS,
      open: (row) => {
        location.hash = `#/entry?seq=${row.seq}`;
      },
      extra: { title: 'Patient’s record', cell: (row) => patientButton(row) || el('span', { text: '—' }) },
    }));
  } else {
    table.append(el('p', { class: 'empty', text: 'No entries match this search. Try fewer boxes or a wider date range.' }));
  }
  exportLinks($('audit-csv'), $('audit-fhir'), filters);
  $('audit-prev').hidden = cursors.length === 0;
  $('audit-next').hidden = !nextCursor;
  $('audit-results').hidden = false;
  $('audit-results').dataset.count = String(rows.length);
  announce(count);
}

export async function openAudit() {
  show('audit', { keepStatus: true });
  if (!$('audit-results').hidden) return; // coming back: keep the results where they were
  fillForm(filters);
}

async function search(event) {
  event.preventDefault();
  showError($('audit-error'), '');
  filters = formFilters();
  cursors = [];
  cursor = null;
  try {
    await runSearch();
    $('audit-results-title').focus();
  } catch (failure) {
    $('audit-results').hidden = true;
    showError($('audit-error'), problemWords(failure));
  }
}

async function turn(forward) {
  if (forward) {
    cursors.push(cursor);
    cursor = nextCursor;
  } else {
    cursor = cursors.pop() || null;
  }
  await runSearch();
  $('audit-results-title').focus();
}

export async function openEntry(params) {
  const seq = params.get('seq');
  const found = await api('GET', `/admin/api/audit/entries/${encodeURIComponent(seq)}`);
  const e = found.entry;
  $('entry-title').textContent = `Audit entry ${e.seq}: ${actionWords(e.action)}`;
  const intact = $('entry-intact');
  intact.dataset.intact = String(found.intact);
  intact.textContent = found.intact
    ? 'This entry is exactly as it was written (its hash matches its contents).'
    : 'Warning: this entry has been changed since it was written (its hash does not match its contents).';
  const actions = clear($('entry-actions'));
  if (e.patient_id) {
    actions.append(patientButton({ patient_id: e.patient_id, prison_number: found.prison_number }));
  }
  const documents = e.data && e.data.document_ids ? e.data.document_ids.join(', ') : '';
  clear($('entry-facts')).append(facts([
    ['When', `${when(e.ts)} (${e.ts} UTC)`],
    ['Who', found.actor_name || e.actor_id || 'Unknown'],
    ['Role', roleWords(e.actor_role)],
    ['What', `${actionWords(e.action)} (${e.action})`],
    ['Outcome', outcomeWords(e.outcome)],
    ['Patient', found.prison_number ? `${found.prison_number} (id ${e.patient_id})` : e.patient_id],
    ['Consultation', e.consultation_id],
    ['Purpose of use', purposeWords(e.purpose_of_use)],
    ['Device', e.device_id],
    ['From address', e.ip],
    ['Prison', e.establishment],
    ['Documents', documents],
    ['Description', e.data && e.data.description],
    ['On the authority of', e.authority_jti],
    ['Request', e.request_id],
    ['Entry hash', e.entry_hash],
    ['Previous entry hash', e.prev_hash],
  ], 'details wide'));
  const detail = e.detail || {};
  const keys = Object.keys(detail);
  clear($('entry-detail')).append(keys.length
    ? facts(keys.map((key) => [key.replaceAll('_', ' '), typeof detail[key] === 'string' ? detail[key] : JSON.stringify(detail[key])]), 'details wide')
    : el('p', { class: 'empty', text: 'No further details.' }));
  show('entry');
}

let accessPatient = null;
let accessCursor = null;

async function loadAccesses(append) {
  const page = await api('GET', `/admin/api/audit/patients/${encodeURIComponent(accessPatient)}/accesses${query({ cursor: accessCursor, limit: PAGE })}`);
  const rows = page.entries;
  const holder = $('accesses-table');
  if (!append) clear(holder);
  if (rows.length === 0 && !append) {
    holder.append(el('p', { class: 'empty', text: 'Nobody has accessed this patient’s record.' }));
  } else if (rows.length) {
    holder.append(auditTable(rows, {
      caption: append ? 'Older accesses' : 'Accesses, newest first',
      columns: ['when', 'who', 'what', 'outcome', 'consultation', 'purpose', 'device'],
      open: (row) => {
        location.hash = `#/entry?seq=${row.seq}`;
      },
    }));
  }
  accessCursor = page.next_cursor;
  $('accesses-more').hidden = !accessCursor;
  return rows;
}

export async function openPatientAccesses(params) {
  accessPatient = params.get('patient');
  accessCursor = null;
  const rows = await loadAccesses(false);
  const number = rows.find((r) => r.prison_number);
  $('accesses-lead').textContent = `Patient ${number ? number.prison_number : accessPatient}: every grant, read, note, share and break-glass, allowed or refused, with the consultation, the purpose of use and the device.`;
  exportLinks($('accesses-csv'), $('accesses-fhir'), { patient: accessPatient }, 'patient_accesses');
  show('patient-accesses');
}

export function bindAudit() {
  $('audit-form').addEventListener('submit', search);
  $('audit-clear').addEventListener('click', () => {
    fillForm({});
    $('audit-patient').focus();
  });
  $('audit-next').addEventListener('click', () => turn(true).catch((f) => announce(problemWords(f), 'warning')));
  $('audit-prev').addEventListener('click', () => turn(false).catch((f) => announce(problemWords(f), 'warning')));
  $('entry-back').addEventListener('click', () => history.back());
  $('accesses-back').addEventListener('click', () => history.back());
  $('accesses-more').addEventListener('click', () => loadAccesses(true).catch((f) => announce(problemWords(f), 'warning')));
}
