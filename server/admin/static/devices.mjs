// Devices: each with its last device check (and the rules it failed), revoke; enrol from what
// `telemed-device enrol` printed on the device.

import { api } from './api.mjs';
import { $, el, clear, when, button, showError, announce } from './dom.mjs';
import { ask } from './dialog.mjs';
import { show } from './screens.mjs';
import { kindWords, problemWords } from './words.mjs';

const ENROL_FIELDS = ['id', 'kind', 'display_name', 'serial', 'model', 'type_approval', 'establishment', 'imei', 'iccid', 'imsi', 'public_key'];
const INPUT_IDS = {
  id: 'dev-id', kind: 'dev-kind', display_name: 'dev-display', serial: 'dev-serial', model: 'dev-model',
  type_approval: 'dev-approval', establishment: 'dev-establishment', imei: 'dev-imei', iccid: 'dev-iccid',
  imsi: 'dev-imsi', public_key: 'dev-key',
};

function checkCell(check) {
  if (!check) return el('td', { class: 'check-none', text: 'No check yet' });
  const cell = el('td', { class: `check-${check.outcome}`, data: { checkOutcome: check.outcome } });
  if (check.outcome === 'pass') {
    cell.append(el('strong', { text: 'Passed' }), el('span', { class: 'sub', text: when(check.checked_at) }));
  } else if (check.outcome === 'fail') {
    cell.append(el('strong', { text: 'Failed' }), el('span', { class: 'sub', text: when(check.checked_at) }));
    cell.append(el('ul', { class: 'failed-rules' }, check.failed_rules.map((rule) => el(
      'li',
      { data: { rule: rule.id } },
      el('span', { class: 'rule-title', text: `${rule.title} (${rule.id})` }),
      rule.remediation ? el('span', { class: 'sub', text: rule.remediation }) : null,
    ))));
  } else {
    cell.append(el('strong', { text: 'Refused' }), el('span', { class: 'sub', text: `${when(check.checked_at)} · ${check.code || ''}` }));
  }
  return cell;
}

async function revoke(device) {
  const answer = await ask({
    title: `Revoke ${device.display_name || device.id}?`,
    body: 'It will be refused at once: no device check, no record access, and it leaves any call it is in. To use it again it must be enrolled anew.',
    confirm: 'Revoke the device',
    danger: true,
    input: { label: 'Why (kept in the audit log)', hint: 'For example: lost on the wing, sent for repair.', required: true },
    kind: 'revoke',
  });
  if (!answer) return;
  try {
    await api('POST', `/admin/api/devices/${encodeURIComponent(device.id)}/revoke`, { reason: answer.text });
    await openDevices(null, { keepStatus: true });
    announce(`${device.id} is revoked.`);
  } catch (failure) {
    announce(problemWords(failure), 'warning');
  }
}

function devicesTable(devices) {
  const head = el('tr', {}, ['Device', 'Kind', 'Prison', 'Status', 'Last device check', 'Action'].map((t) => el('th', { text: t, attrs: { scope: 'col' } })));
  const rows = devices.map((d) => el(
    'tr',
    { data: { deviceId: d.id, status: d.status } },
    el('th', { attrs: { scope: 'row' } }, d.display_name || d.id, el('span', { class: 'sub mono', text: d.id })),
    el('td', { text: kindWords(d.kind) }),
    el('td', { text: d.establishment || '—' }),
    el('td', { class: `status-${d.status}`, text: d.status === 'active' ? 'Active' : `Revoked ${when(d.revoked_at)}` }),
    checkCell(d.last_check),
    el('td', {}, d.status === 'active'
      ? button('Revoke…', () => revoke(d), { small: true, kind: 'danger', attrs: { 'aria-label': `Revoke ${d.id}` } })
      : '—'),
  ));
  return el('table', { class: 'grid' }, el('caption', { text: `${devices.length} enrolled device${devices.length === 1 ? '' : 's'}` }), el('thead', {}, head), el('tbody', {}, rows));
}

export async function openDevices(_params, { keepStatus = false } = {}) {
  const devices = await api('GET', '/admin/api/devices');
  clear($('devices-table')).append(devices.length ? devicesTable(devices) : el('p', { class: 'empty', text: 'No device is enrolled yet.' }));
  show('devices', { keepStatus, focus: !keepStatus });
}

async function readPasted(event) {
  event.preventDefault();
  const text = $('device-paste').value;
  showError($('device-paste-error'), '');
  if (!text.trim()) {
    showError($('device-paste-error'), 'Paste what telemed-device enrol printed first.');
    $('device-paste').focus();
    return;
  }
  try {
    const parsed = await api('POST', '/admin/api/devices/parse', { text });
    for (const name of ENROL_FIELDS) {
      const input = $(INPUT_IDS[name]);
      input.value = parsed.fields[name] || (name === 'kind' ? 'prison_laptop' : '');
      input.removeAttribute('aria-invalid');
    }
    for (const name of parsed.missing) $(INPUT_IDS[name]).setAttribute('aria-invalid', 'true');
    $('dev-modem').hidden = $('dev-kind').value !== 'prison_laptop';
    $('device-enrol-form').hidden = false;
    showError($('device-enrol-error'), parsed.missing.length ? 'Fill in the boxes marked in red before enrolling.' : '');
    const first = parsed.missing.length ? $(INPUT_IDS[parsed.missing[0]]) : $('dev-establishment');
    first.focus();
  } catch (failure) {
    showError($('device-paste-error'), problemWords(failure));
  }
}

async function enrol(event) {
  event.preventDefault();
  const body = {};
  for (const name of ENROL_FIELDS) {
    const value = $(INPUT_IDS[name]).value.trim();
    if (value) body[name] = value;
  }
  if (body.kind !== 'prison_laptop') {
    delete body.imei;
    delete body.iccid;
    delete body.imsi;
  }
  try {
    const device = await api('POST', '/admin/api/devices', body);
    $('device-enrol-form').hidden = true;
    $('device-paste').value = '';
    await openDevices(null, { keepStatus: true });
    announce(`${device.id} is enrolled. It can now run its device check.`);
    $('devices-title').focus();
  } catch (failure) {
    const fields = failure.body && failure.body.errors ? failure.body.errors.map((e) => e.loc[e.loc.length - 1]) : [];
    for (const name of fields) if (INPUT_IDS[name]) $(INPUT_IDS[name]).setAttribute('aria-invalid', 'true');
    const named = fields.filter((n) => INPUT_IDS[n]).map((n) => $(INPUT_IDS[n]).labels[0].textContent);
    showError($('device-enrol-error'), named.length ? `Check these boxes: ${named.join(', ')}.` : problemWords(failure));
  }
}

export function bindDevices() {
  $('device-paste-form').addEventListener('submit', readPasted);
  $('device-enrol-form').addEventListener('submit', enrol);
  $('dev-kind').addEventListener('change', () => {
    $('dev-modem').hidden = $('dev-kind').value !== 'prison_laptop';
  });
  $('device-enrol-cancel').addEventListener('click', () => {
    $('device-enrol-form').hidden = true;
    $('device-paste').focus();
  });
}
