// Audit entries as table rows: when, who, what, outcome, patient, consultation, purpose, device.

import { el, when } from './dom.mjs';
import { actionWords, outcomeWords, purposeWords, roleWords } from './words.mjs';

export function who(row) {
  if (row.actor_name) return row.actor_name;
  if (row.actor_id) return row.actor_role === 'device' ? `Device ${row.actor_id}` : row.actor_id;
  return 'Unknown';
}

function cell(text, className = '') {
  return el('td', { class: className, text: text || '—' });
}

/**
 * A <table> of audit rows. `columns` picks from: when, who, what, outcome, patient,
 * consultation, purpose, device. `open(row)` makes the first cell a button to the whole entry.
 */
export function auditTable(rows, { caption, columns, open = null, extra = null }) {
  const heads = {
    when: 'When',
    who: 'Who',
    what: 'What',
    outcome: 'Outcome',
    patient: 'Patient',
    consultation: 'Consultation',
    purpose: 'Purpose of use',
    device: 'Device',
  };
  const head = el('tr', {}, columns.map((c) => el('th', { text: heads[c], attrs: { scope: 'col' } })));
  if (extra) head.append(el('th', { text: extra.title, attrs: { scope: 'col' } }));
  const body = el('tbody');
  for (const row of rows) {
    const tr = el('tr', { data: { seq: row.seq, action: row.action, outcome: row.outcome, intact: row.intact } });
    for (const column of columns) {
      if (column === 'when') {
        const th = el('th', { attrs: { scope: 'row' }, class: 'when' });
        if (open) {
          th.append(el('button', {
            class: 'link-button',
            text: when(row.ts),
            attrs: { type: 'button', 'aria-label': `Open entry ${row.seq}, ${when(row.ts)}` },
            data: { openSeq: row.seq },
            on: { click: () => open(row) },
          }));
        } else {
          th.textContent = when(row.ts);
        }
        th.append(el('span', { class: 'sub', text: `Entry ${row.seq}` }));
        if (!row.intact) th.append(el('strong', { class: 'tampered', text: 'Changed after it was written' }));
        tr.append(th);
      } else if (column === 'who') {
        tr.append(el('td', {}, who(row), el('span', { class: 'sub', text: roleWords(row.actor_role) })));
      } else if (column === 'what') {
        const what = el('td', {}, actionWords(row.action), el('span', { class: 'sub code', text: row.action }));
        if (row.reason) what.append(el('span', { class: 'sub', text: `Reason: ${row.reason}` }));
        tr.append(what);
      } else if (column === 'outcome') {
        tr.append(el('td', { class: `outcome outcome-${row.outcome}`, text: outcomeWords(row.outcome) }));
      } else if (column === 'patient') {
        tr.append(cell(row.prison_number || row.patient_id));
      } else if (column === 'consultation') {
        tr.append(cell(row.consultation_id ? row.consultation_id.slice(0, 8) : '', 'mono'));
      } else if (column === 'purpose') {
        tr.append(cell(purposeWords(row.purpose_of_use)));
      } else if (column === 'device') {
        tr.append(cell(row.device_id));
      }
    }
    if (extra) tr.append(el('td', {}, extra.cell(row)));
    body.append(tr);
  }
  return el(
    'table',
    { class: 'grid' },
    el('caption', { text: caption }),
    el('thead', {}, head),
    body,
  );
}
