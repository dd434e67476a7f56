// Before going live: check who the patient is, record their consent, invite a specialist.
// The same checklist shows on the prepare screen and beside the call until it goes live.

import { api, paths } from './api.js';
import { app, go, route, updateConsultation } from './app.js';
import { ask } from './dialog.js';
import { formatDate, formatDateTime, formatTime } from './format.js';
import { $, announce, clear, h, plainError, show } from './screens.js';

// Invite links made in this page, per consultation (memory only: the link is shown to copy).
const invites = new Map();
// Who has come through each invite: participant id "specialist:<invite_id>" -> status words.
const joined = new Map();

/** Record how an invited specialist is doing ("waiting", "admitted", "left"), for the checklist. */
export function setInviteStatus(participantId, status) {
  joined.set(participantId, status);
  for (const node of document.querySelectorAll(`[data-invite-participant="${CSS.escape(participantId)}"]`)) {
    node.textContent = inviteStatusWords(status);
    node.dataset.inviteStatus = status;
  }
}

function inviteStatusWords(status) {
  switch (status) {
    case 'waiting': return 'Joined: waiting for you to let them in.';
    case 'admitted': return 'Joined: in the call.';
    case 'left': return 'Has left the call.';
    case 'denied': return 'Was not let in.';
    default: return 'Has not opened the link yet.';
  }
}

export function invitesOf(consultationId) {
  return invites.get(consultationId) || [];
}

function doneLine(text, kind) {
  return h('p', { className: 'done', dataset: { done: kind } }, h('span', { className: 'tick', 'aria-hidden': 'true' }, '✓ '), text);
}

function step(level, number, title, ...content) {
  const heading = h(level, { className: 'step-title' }, h('span', { className: 'step-number' }, `${number}.`), ` ${title}`);
  return h('li', { className: 'step' }, heading, ...content);
}

/**
 * Render the checklist for consultation `c` into `container`.
 * `level` is the heading level of each step (h2 on its own screen, h3 beside the call).
 * `onChange` runs after identity or consent was recorded.
 */
export function renderChecklist(container, c, { level = 'h2', onChange = () => {}, allowCancel = true } = {}) {
  clear(container);
  const patient = c.patient || {};
  const list = h('ol', { className: 'steps', dataset: { consultationId: c.id } });

  // 1. Identity.
  const identity = step(level, 1, 'Check who the patient is',
    h('p', {}, 'Ask the patient to tell you their full name and date of birth. Check them, and the prison number, against these:'),
    h('dl', { className: 'details big' },
      h('div', {}, h('dt', {}, 'Name'), h('dd', { dataset: { field: 'name' } }, patient.name || '')),
      h('div', {}, h('dt', {}, 'Prison number'), h('dd', { dataset: { field: 'prison_number' } }, patient.prison_number || '')),
      h('div', {}, h('dt', {}, 'Date of birth'), h('dd', { dataset: { field: 'date_of_birth' } }, formatDate(patient.date_of_birth)))));
  identity.dataset.step = 'identity';
  if (c.identity_confirmed_at) {
    if (level !== 'h2') identity.classList.add('compact');
    identity.append(doneLine(`Identity confirmed at ${formatTime(c.identity_confirmed_at)}.`, 'identity'));
  } else {
    const button = h('button', { type: 'button', className: 'control primary', dataset: { action: 'confirm-identity' } }, 'Identity confirmed');
    button.addEventListener('click', async () => {
      button.disabled = true;
      try {
        const out = await api(paths.identityCheck(c.id), { method: 'POST' });
        updateConsultation(c.id, {
          identity_confirmed_at: out.identity_confirmed_at || new Date().toISOString(),
          patient: { ...patient, name: out.name || patient.name, prison_number: out.prison_number || patient.prison_number, date_of_birth: out.date_of_birth || patient.date_of_birth },
        });
        announce('Identity confirmed.');
        renderChecklist(container, c, { level, onChange, allowCancel });
        onChange('identity');
        const next = container.querySelector('[data-action="record-consent"]');
        if (next) next.focus();
      } catch (err) {
        button.disabled = false;
        announce(plainError(err, 'The identity check could not be saved. Please try again.'), 'warning');
      }
    });
    identity.append(h('div', { className: 'actions' }, button));
  }
  list.append(identity);

  // 2. Consent.
  const consent = step(level, 2, 'Ask for consent',
    h('p', {}, 'Explain that this is a video consultation and that you will read their health records during it. Ask whether they agree.'));
  consent.dataset.step = 'consent';
  if (c.consent_recorded_at) {
    if (level !== 'h2') consent.classList.add('compact');
    consent.append(doneLine(`The patient agreed at ${formatTime(c.consent_recorded_at)}.`, 'consent'));
  } else {
    const agree = h('button', { type: 'button', className: c.identity_confirmed_at ? 'control primary' : 'control', dataset: { action: 'record-consent' } }, 'Patient agrees');
    agree.addEventListener('click', async () => {
      agree.disabled = true;
      try {
        const out = await api(paths.consent(c.id), { method: 'POST', body: {} });
        updateConsultation(c.id, { consent_recorded_at: (out && out.consent_recorded_at) || new Date().toISOString() });
        announce('Consent recorded: the patient agrees.');
        renderChecklist(container, c, { level, onChange, allowCancel });
        onChange('consent');
      } catch (err) {
        agree.disabled = false;
        announce(plainError(err, 'The consent could not be saved. Please try again.'), 'warning');
      }
    });
    const buttons = h('div', { className: 'actions' }, agree);
    if (allowCancel) {
      const refuse = h('button', { type: 'button', className: 'control', dataset: { action: 'no-consent' } }, 'The patient does not agree');
      refuse.addEventListener('click', async () => {
        const answer = await ask({
          title: 'Cancel this consultation?',
          body: `Without the patient’s consent the consultation cannot go ahead. It will be cancelled and ${patient.name || 'the patient'} will not be called.`,
          confirm: 'Cancel the consultation',
          cancel: 'Go back',
          danger: true,
          kind: 'no-consent',
        });
        if (!answer) return;
        try {
          await api(paths.cancel(c.id), { method: 'POST', body: { reason: 'The patient did not agree to the consultation' } });
          await go('schedule', { announceText: `The consultation with ${patient.name || 'the patient'} was cancelled.` });
        } catch (err) {
          announce(plainError(err, 'The consultation could not be cancelled. Please try again.'), 'warning');
        }
      });
      buttons.append(refuse);
    }
    consent.append(buttons);
  }
  list.append(consent);

  // 3. Invite a specialist (optional).
  list.append(inviteStep(level, c));
  container.append(list);
}

function inviteStep(level, c) {
  const item = step(level, 3, 'Invite a specialist (if you need one)');
  item.dataset.step = 'invite';
  const made = h('ul', { className: 'invites' });
  for (const invite of invitesOf(c.id)) made.append(inviteItem(invite));
  const nameId = `invite-name-${level}`;
  const name = h('input', { id: nameId, type: 'text', maxlength: '120', autocomplete: 'off', value: c.specialist_name || '' });
  const error = h('div', { className: 'error-box', role: 'alert', hidden: true });
  const button = h('button', { type: 'button', className: 'control', dataset: { action: 'create-invite' } }, 'Create an invite link');
  button.addEventListener('click', async () => {
    error.hidden = true;
    const who = name.value.trim();
    if (!who) {
      error.textContent = 'Type the specialist’s name, so you know who is waiting.';
      error.hidden = false;
      name.focus();
      return;
    }
    button.disabled = true;
    try {
      const invite = await api(paths.invites(c.id), { method: 'POST', body: { name: who } });
      invites.set(c.id, [...invitesOf(c.id), invite]);
      const node = inviteItem(invite);
      made.append(node);
      announce(`Invite link for ${invite.name} created. Copy it and send it to them.`);
      node.querySelector('button').focus();
    } catch (err) {
      error.textContent = plainError(err, 'The invite link could not be made. Please try again.');
      error.hidden = false;
    } finally {
      button.disabled = false;
    }
  });
  item.append(
    h('p', {}, 'A specialist outside the prison joins with a link that works once. Send it to them by secure email.'),
    made,
    h('div', { className: 'field inline' },
      h('div', {}, h('label', { for: nameId }, 'Specialist’s name'), name),
      button),
    error);
  return item;
}

function inviteItem(invite) {
  const participant = `specialist:${invite.invite_id}`;
  const fieldId = `invite-link-${invite.invite_id}`;
  const link = h('input', { id: fieldId, type: 'text', readonly: true, value: invite.link, className: 'link', spellcheck: 'false' });
  const copy = h('button', { type: 'button', className: 'control small', dataset: { action: 'copy-invite' } }, 'Copy link');
  const copied = h('span', { className: 'copied', 'aria-live': 'polite' });
  copy.addEventListener('click', async () => {
    let ok = false;
    try {
      await navigator.clipboard.writeText(invite.link);
      ok = true;
    } catch (_) {
      link.select();
      try {
        ok = document.execCommand('copy');
      } catch (__) {
        ok = false;
      }
    }
    copied.textContent = ok ? 'Copied.' : 'Select the link and copy it with Ctrl+C.';
  });
  const status = joined.get(participant);
  return h('li', { className: 'invite', dataset: { inviteId: invite.invite_id } },
    h('label', { for: fieldId }, `Link for ${invite.name}`),
    h('div', { className: 'field inline' }, link, copy, copied),
    h('p', { className: 'sub' }, `Works until ${formatDateTime(invite.expires_at)}, once.`),
    h('p', { className: 'invite-status', dataset: { inviteParticipant: participant, inviteStatus: status || 'not_joined' } },
      inviteStatusWords(status)));
}

function open(c) {
  const consultation = c || app.consultation;
  if (!consultation) return go('schedule');
  app.consultation = consultation;
  const patient = consultation.patient || {};
  $('prepare-title').textContent = `Before the consultation with ${patient.name || 'the patient'}`;
  const where = consultation.room ? (consultation.room.display_name || consultation.room.id) : 'no room booked';
  $('prepare-lead').textContent = `${formatTime(consultation.scheduled_start)} to ${formatTime(consultation.scheduled_end)}, ${where}.`;
  const refresh = () => {
    const ready = consultation.identity_confirmed_at && consultation.consent_recorded_at;
    $('prepare-go').classList.toggle('primary', Boolean(ready));
  };
  renderChecklist($('prepare-steps'), consultation, { level: 'h2', onChange: refresh });
  refresh();
  show('prepare', { title: 'Before the consultation' });
  return undefined;
}

export function bindPrepare() {
  $('prepare-go').addEventListener('click', () => go('call', app.consultation));
  $('prepare-back').addEventListener('click', () => go('schedule'));
  route('prepare', open);
}
