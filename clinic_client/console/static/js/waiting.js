// The waiting room, as the host sees it: who waits and for how long; let in, turn away
// (with a reason they will read), and — for those in the call — send back.

import { describeParticipant } from './app.js';
import { formatMinutes } from './format.js';
import { $, clear, h } from './screens.js';

const since = new Map();   // participant id -> when we first saw them waiting (ms)
let timer = null;
let last = { participants: [], actions: null };

/** Forget arrival times (a new call). */
export function resetWaiting() {
  since.clear();
  clearInterval(timer);
  timer = null;
  clear($('waiting-list'));
  $('waiting-empty').hidden = false;
}

function waitedFor(p) {
  if (!since.has(p.id)) since.set(p.id, Date.now());
  return Date.now() - since.get(p.id);
}

function row(p, { admit, deny }) {
  const who = describeParticipant(p);
  const suspended = p.status === 'suspended';
  const state = !p.connected
    ? 'Connection interrupted, waiting for them to come back'
    : suspended ? 'Paused: their device failed its security check'
      : `Waiting for ${formatMinutes(waitedFor(p))}`;
  const buttons = h('div', { className: 'actions' });
  if (!suspended) {
    buttons.append(h('button', {
      type: 'button', className: 'control primary', dataset: { action: 'admit' },
      'aria-label': `Let in: ${who}`, onclick: () => admit(p),
    }, 'Let in'));
  }
  buttons.append(h('button', {
    type: 'button', className: 'control', dataset: { action: 'deny' },
    'aria-label': `Turn away: ${who}`, onclick: () => deny(p),
  }, 'Turn away'));
  return h('li', { className: 'waiting-row', dataset: { participant: p.id, status: p.status, role: p.role } },
    h('p', { className: 'who' }, who),
    h('p', { className: 'since' }, state),
    buttons);
}

/** Show everyone who is waiting (or suspended) with their buttons. */
export function renderWaiting(participants, actions) {
  last = { participants, actions };
  const list = $('waiting-list');
  const waiting = participants.filter((p) => p.status === 'waiting' || (p.status === 'suspended' && p.role !== 'host'));
  for (const id of [...since.keys()]) {
    if (!waiting.some((p) => p.id === id)) since.delete(id);
  }
  // Keep keyboard focus on the same row's button across a re-render.
  const focused = document.activeElement && list.contains(document.activeElement)
    ? { id: document.activeElement.closest('li')?.dataset.participant, action: document.activeElement.dataset.action }
    : null;
  clear(list);
  for (const p of waiting) list.append(row(p, actions));
  $('waiting-empty').hidden = waiting.length > 0;
  $('waiting').dataset.count = String(waiting.length);
  if (focused && focused.id) {
    const again = list.querySelector(`li[data-participant="${CSS.escape(focused.id)}"] [data-action="${focused.action}"]`);
    if (again) again.focus();
    else $('waiting-title').focus();
  }
  if (waiting.length && timer === null) {
    timer = setInterval(() => {
      // Only the minutes change: update the text in place.
      for (const p of last.participants) {
        const node = list.querySelector(`li[data-participant="${CSS.escape(p.id)}"] .since`);
        if (node && p.status === 'waiting' && p.connected) node.textContent = `Waiting for ${formatMinutes(waitedFor(p))}`;
      }
    }, 15000);
  } else if (!waiting.length && timer !== null) {
    clearInterval(timer);
    timer = null;
  }
}
