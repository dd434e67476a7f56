// The overview: what is waiting, and the one thing to do next.

import { api } from './api.mjs';
import { $, el, clear } from './dom.mjs';
import { show } from './screens.mjs';

function link(label, hash, primary = false) {
  return el('a', { class: primary ? 'button-link primary' : 'button-link', text: label, attrs: { href: hash } });
}

function plural(n, one, many) {
  return `${n} ${n === 1 ? one : many}`;
}

export async function openHome() {
  const o = await api('GET', '/admin/api/overview');
  const next = clear($('home-next'));
  let step;
  if (o.integrity.status === 'failed') {
    step = ['The audit log has been tampered with.', 'See what the check found', '#/integrity', 'alarm'];
  } else if (o.pending_break_glass > 0) {
    step = [`${plural(o.pending_break_glass, 'break-glass access is', 'break-glass accesses are')} waiting for your review.`, 'Review them now', '#/reviews', 'attention'];
  } else if (o.failed_device_checks_24h > 0) {
    step = [`${plural(o.failed_device_checks_24h, 'device check', 'device checks')} failed in the last 24 hours.`, 'See the devices', '#/devices', 'attention'];
  } else if (o.integrity.status === 'unknown') {
    step = ['The audit log has not been checked yet.', 'Check it now', '#/integrity', 'calm'];
  } else {
    step = ['Nothing is waiting for you.', 'Search the audit log', '#/audit', 'calm'];
  }
  next.dataset.tone = step[3];
  next.append(el('p', { class: 'next-text', text: step[0] }), link(step[1], step[2], true));

  const cards = clear($('home-cards'));
  const card = (key, title, value, words, hash, label) => el(
    'li',
    { class: 'card', data: { card: key } },
    el('h2', { text: title }),
    el('p', { class: 'card-value', text: value }),
    el('p', { text: words }),
    link(label, hash),
  );
  cards.append(
    card('break-glass', 'Break-glass reviews', String(o.pending_break_glass),
      o.pending_break_glass ? 'waiting for sign-off' : 'nothing waiting', '#/reviews', 'Go to reviews'),
    card('device-checks', 'Failed device checks', String(o.failed_device_checks_24h),
      'in the last 24 hours', '#/devices', 'Go to devices'),
    card('integrity', 'Audit integrity',
      { ok: 'Intact', failed: 'TAMPERED', unknown: 'Not checked' }[o.integrity.status],
      o.integrity.summary, '#/integrity', 'Go to integrity'),
    card('consultations', 'Consultations today', String(o.consultations_today),
      'across all clinicians', '#/consultations', 'See the day'),
  );
  show('home');
}
