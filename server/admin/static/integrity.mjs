// Audit integrity: "the log verifies up to entry N, checkpoint signed at T", a button that
// checks the whole log now, and an alarm in plain words when it fails.

import { api } from './api.mjs';
import { $, clear, facts, when, announce } from './dom.mjs';
import { show } from './screens.mjs';
import { problemWords } from './words.mjs';

const HEADLINES = {
  ok: 'The audit log is intact',
  failed: 'Alarm: the audit log has been tampered with',
  unknown: 'The audit log has not been checked yet',
};

function render(status, summary, rows) {
  const box = $('integrity-box');
  box.dataset.integrity = status;
  box.setAttribute('role', status === 'failed' ? 'alert' : 'region');
  box.setAttribute('aria-labelledby', 'integrity-headline');
  $('integrity-headline').textContent = HEADLINES[status];
  $('integrity-summary').textContent = summary;
  clear($('integrity-facts')).append(facts(rows));
  $('integrity-advice').hidden = status !== 'failed';
}

function checkpointLine(checkpoint) {
  return checkpoint
    ? `Entries 1 to ${checkpoint.tree_size}, signed at ${when(checkpoint.ts)}`
    : 'None signed yet (the server signs every few seconds)';
}

export async function openIntegrity() {
  const s = await api('GET', '/admin/api/integrity');
  const last = s.last_verification;
  render(s.status, s.summary, [
    ['Entries in the log', String(s.head_seq)],
    ['Newest signed checkpoint', checkpointLine(s.checkpoint)],
    ['Last checked', last ? `${when(last.at)}${last.ok ? '' : ' (failed)'}` : 'Never'],
  ]);
  show('integrity');
}

async function verify() {
  const button = $('integrity-verify');
  button.disabled = true;
  button.textContent = 'Checking the audit log…';
  try {
    const r = await api('POST', '/admin/api/integrity/verify');
    const upTo = r.ok ? r.entries_checked : Math.max((r.first_bad_seq || 1) - 1, 0);
    render(r.status, r.summary, [
      ['Verifies up to entry', String(upTo)],
      ['Newest signed checkpoint', checkpointLine(r.checkpoint)],
      ['Entries checked', `${r.entries_checked} of ${r.head_seq}`],
      ['First entry that does not verify', r.first_bad_seq ? String(r.first_bad_seq) : null],
      ['Checked', when(new Date().toISOString())],
    ]);
    announce(r.ok ? 'The check is done: the audit log is intact.' : 'The check found the audit log has been tampered with.', r.ok ? '' : 'warning');
  } catch (failure) {
    announce(problemWords(failure), 'warning');
  } finally {
    button.disabled = false;
    button.textContent = 'Check the audit log now';
  }
}

export function bindIntegrity() {
  $('integrity-verify').addEventListener('click', verify);
}
