// Break-glass accesses waiting for review, and other record accesses outside a consultation:
// each signed off as reviewed (justified) or escalated (with a comment saying why).

import { api, query } from './api.mjs';
import { $, el, clear, facts, when, button, announce } from './dom.mjs';
import { ask } from './dialog.mjs';
import { auditTable } from './rows.mjs';
import { show } from './screens.mjs';
import { actionWords, problemWords } from './words.mjs';

let outsideCursor = null;

async function decide(kind, target, decision, label) {
  const escalate = decision === 'escalated';
  const answer = await ask({
    title: escalate ? `Escalate ${label}?` : `Mark ${label} as reviewed?`,
    body: escalate
      ? 'Say why this access needs looking into. Your comment is kept with the sign-off in the audit log.'
      : 'You confirm the access was justified. The sign-off is kept in the audit log.',
    confirm: escalate ? 'Escalate' : 'Mark as reviewed',
    danger: escalate,
    input: escalate
      ? { label: 'Why it needs looking into', hint: 'For example: no emergency is recorded on the wing at that time.', required: true }
      : { label: 'Comment (optional)', hint: '' },
    kind: `sign-off-${decision}`,
  });
  if (!answer) return;
  const url = kind === 'glass'
    ? `/admin/api/break-glass/${encodeURIComponent(target)}/sign-off`
    : `/admin/api/outside-consultation/${encodeURIComponent(target)}/sign-off`;
  try {
    await api('POST', url, { decision, comment: answer.text });
    await openReviews(null, { keepStatus: true });
    announce(escalate ? `${label} escalated.` : `${label} marked as reviewed.`);
  } catch (failure) {
    announce(problemWords(failure), 'warning');
  }
}

function glassCard(item) {
  const label = `the break-glass access by ${item.user_name || item.user_id}`;
  const reads = item.reads.length
    ? el('ul', { class: 'reads' }, item.reads.map((r) => el('li', {}, `${when(r.ts)}: ${actionWords(r.action)}`,
      r.document_ids.length ? ` (${r.document_ids.length} document${r.document_ids.length > 1 ? 's' : ''})` : '')))
    : el('p', { class: 'empty', text: 'Nothing was opened under this access.' });
  return el(
    'article',
    { class: 'review-card', data: { accessId: item.id, status: item.status }, attrs: { 'aria-labelledby': `glass-${item.id}` } },
    el('h3', { attrs: { id: `glass-${item.id}` }, text: `${item.user_name || item.user_id} opened the record of ${item.prison_number || item.patient_id}` }),
    facts([
      ['When', `${when(item.opened_at)} (access until ${when(item.expires_at)})`],
      ['Device', item.device_id],
    ]),
    el('h4', { text: 'Reason given' }),
    el('blockquote', { class: 'reason', text: item.reason, data: { reason: '' } }),
    el('h4', { text: 'What was opened' }),
    reads,
    el('div', { class: 'actions' },
      button('Mark as reviewed', () => decide('glass', item.id, 'reviewed', label), { kind: 'primary', data: { signOff: 'reviewed' } }),
      button('Escalate…', () => decide('glass', item.id, 'escalated', label), { kind: 'danger', data: { signOff: 'escalated' } }),
    ),
  );
}

function signOffCell(row) {
  if (row.break_glass_id) return el('span', { text: 'Part of a break-glass access (signed off above)' });
  if (row.sign_off) {
    const s = row.sign_off;
    return el('span', { data: { decision: s.decision } },
      `${s.decision === 'escalated' ? 'Escalated' : 'Reviewed'} by ${s.reviewer_name || s.reviewer_id}, ${when(s.reviewed_at)}`,
      s.comment ? el('span', { class: 'sub', text: `“${s.comment}”` }) : null);
  }
  const label = `entry ${row.entry.seq}`;
  return el('div', { class: 'actions tight' },
    button('Reviewed', () => decide('entry', row.entry.seq, 'reviewed', label), { small: true, data: { signOff: 'reviewed' }, attrs: { 'aria-label': `Mark entry ${row.entry.seq} as reviewed` } }),
    button('Escalate…', () => decide('entry', row.entry.seq, 'escalated', label), { small: true, data: { signOff: 'escalated' }, attrs: { 'aria-label': `Escalate entry ${row.entry.seq}` } }));
}

function outsideTable(rows, caption) {
  const byEntry = new Map(rows.map((r) => [r.entry.seq, r]));
  return auditTable(rows.map((r) => r.entry), {
    caption,
    columns: ['when', 'who', 'what', 'outcome', 'patient', 'purpose', 'device'],
    open: (entry) => {
      location.hash = `#/entry?seq=${entry.seq}`;
    },
    extra: { title: 'Sign-off', cell: (entry) => signOffCell(byEntry.get(entry.seq)) },
  });
}

async function loadOutside(append) {
  const page = await api('GET', `/admin/api/outside-consultation${query({ cursor: outsideCursor, limit: 25 })}`);
  const holder = $('outside-table');
  if (!append) clear(holder);
  if (!append && page.entries.length === 0) {
    holder.append(el('p', { class: 'empty', text: 'No record has been accessed outside a consultation.' }));
  } else if (page.entries.length) {
    holder.append(outsideTable(page.entries, append ? 'Older accesses' : 'Newest first'));
  }
  outsideCursor = page.next_cursor;
  $('outside-more').hidden = !outsideCursor;
}

export async function openReviews(_params, { keepStatus = false } = {}) {
  const items = await api('GET', '/admin/api/break-glass?status=pending');
  const list = clear($('glass-list'));
  $('glass-title').textContent = items.length
    ? `Break-glass accesses waiting for review (${items.length})`
    : 'Break-glass accesses waiting for review';
  if (items.length) list.append(...items.map(glassCard));
  else list.append(el('p', { class: 'empty', data: { empty: 'break-glass' }, text: 'No break-glass access is waiting for review.' }));
  outsideCursor = null;
  await loadOutside(false);
  show('reviews', { keepStatus, focus: !keepStatus });
}

export function bindReviews() {
  $('outside-more').addEventListener('click', () => loadOutside(true).catch((f) => announce(problemWords(f), 'warning')));
}
