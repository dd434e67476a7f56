// The laptop check, before anything else: each policy rule, passed or failed, and the fix in
// words. A laptop that fails can reach nothing else from here but "Check again".

import { api, paths } from './api.js';
import { app, go, route } from './app.js';
import { formatTime } from './format.js';
import { $, announce, clear, h, show } from './screens.js';
import { showLaptopState } from './signin.js';

const OUTCOME_WORDS = {
  pass: 'Passed',
  fail: 'Failed',
  warn: 'Passed, with a warning',
  unknown: 'Could not be checked',
};

function section() {
  return document.querySelector('section[data-screen="device-check"]');
}

/** One rule as a list item: its title, the outcome in words, what was found, and the fix. */
export function ruleItem(rule) {
  const outcome = OUTCOME_WORDS[rule.outcome] ? rule.outcome : 'unknown';
  const failing = outcome === 'fail' || outcome === 'unknown';
  const item = h('li', { className: `rule ${outcome}`, dataset: { ruleId: rule.id, outcome } },
    h('p', { className: 'rule-head' },
      h('span', { className: 'rule-outcome' }, OUTCOME_WORDS[outcome]),
      h('span', { className: 'rule-title' }, rule.title || rule.id)));
  if (rule.actual !== undefined && rule.actual !== null && rule.actual !== '' && outcome !== 'pass') {
    item.append(h('p', { className: 'rule-actual' }, `Found: ${formatActual(rule.actual)}`));
  }
  if ((failing || outcome === 'warn') && rule.remediation) {
    item.append(h('p', { className: 'rule-fix' }, h('strong', {}, 'How to fix it: '), rule.remediation));
  }
  return item;
}

function formatActual(actual) {
  if (typeof actual === 'boolean') return actual ? 'yes' : 'no';
  if (typeof actual === 'string' || typeof actual === 'number') return String(actual);
  if (Array.isArray(actual)) return actual.length ? actual.map(formatActual).join(', ') : 'none';
  try {
    return JSON.stringify(actual);
  } catch (_) {
    return String(actual);
  }
}

function setResult(result) {
  section().dataset.result = result;
}

function showRunning() {
  setResult('running');
  $('check-title').textContent = 'Checking this laptop';
  $('check-lead').textContent = 'This takes a few seconds. The laptop must pass before you can see patients’ details.';
  $('check-spinner').hidden = false;
  $('check-error').hidden = true;
  $('check-continue').hidden = true;
  $('check-again').hidden = true;
  $('check-again').disabled = true;
  $('check-rules-title').hidden = true;
  clear($('check-rules'));
  $('check-when').textContent = '';
}

function render(posture) {
  $('check-spinner').hidden = true;
  $('check-again').disabled = false;
  const rules = Array.isArray(posture.rules) ? posture.rules : [];
  // Failed rules first: they are what the clinician has to act on.
  const order = { fail: 0, unknown: 1, warn: 2, pass: 3 };
  const sorted = [...rules].sort((a, b) => (order[a.outcome] ?? 1) - (order[b.outcome] ?? 1));
  const list = $('check-rules');
  clear(list);
  for (const rule of sorted) list.append(ruleItem(rule));
  $('check-rules-title').hidden = rules.length === 0;
  $('check-when').textContent = posture.checked_at ? `Checked at ${formatTime(posture.checked_at)}.` : '';
  if (posture.compliant) {
    setResult('pass');
    $('check-title').textContent = 'This laptop is ready for consultations';
    $('check-lead').textContent = 'Every security check passed.';
    $('check-continue').hidden = false;
    $('check-again').hidden = true;
    $('check-error').hidden = true;
  } else {
    setResult('fail');
    const failed = rules.filter((r) => r.outcome === 'fail' || r.outcome === 'unknown').length;
    $('check-title').textContent = 'This laptop cannot be used for consultations yet';
    $('check-lead').textContent = failed === 1
      ? 'One check did not pass. Fix it as described below, then press Check again.'
      : `${failed || 'Some'} checks did not pass. Fix them as described below, then press Check again.`;
    const box = $('check-error');
    if (posture.error && posture.error.detail) {
      box.textContent = posture.error.detail;
      box.hidden = false;
    } else {
      box.hidden = true;
    }
    $('check-continue').hidden = true;
    $('check-again').hidden = false;
  }
}

function renderFailure(err) {
  setResult('error');
  $('check-spinner').hidden = true;
  $('check-again').disabled = false;
  $('check-title').textContent = 'We cannot check this laptop right now';
  const unreachable = err.code === 'server_unreachable' || err.status === 502 || err.status === 503 || err.status === 504;
  $('check-lead').textContent = err.code === 'agent_unreachable'
    ? 'The Telemed program on this laptop is not answering. Open Telemed again from the desktop shortcut.'
    : unreachable
      ? 'We cannot reach the Telemed service. Check that the laptop’s mobile connection is on, then press Check again.'
      : 'The check did not finish. Press Check again. If it keeps happening, call the IT service desk.';
  $('check-error').hidden = true;
  $('check-continue').hidden = true;
  $('check-again').hidden = false;
}

/** Run the check now and show the answer; resolves to the posture or null. */
async function runCheck() {
  showRunning();
  try {
    const posture = await api(paths.deviceCheck, { method: 'POST' });
    app.posture = posture;
    showLaptopState();
    render(posture);
    announce(posture.compliant ? 'This laptop is ready for consultations.' : 'This laptop did not pass its security check.',
      posture.compliant ? 'info' : 'warning');
    return posture;
  } catch (err) {
    if (err.code === 'no_session') return null;
    renderFailure(err);
    announce('The laptop check did not finish.', 'warning');
    return null;
  }
}

/** The device-check screen: run the check now ({run: true}) or show the latest posture. */
async function open({ run = true } = {}) {
  show('device-check');
  if (run || !app.posture) {
    await runCheck();
  } else {
    render(app.posture);
  }
  // The button that matters now gets the keyboard next (after the heading).
}

export function bindDeviceCheck() {
  $('check-again').addEventListener('click', async () => {
    await runCheck();
    const next = app.posture && app.posture.compliant ? $('check-continue') : $('check-again');
    next.focus();
  });
  $('check-continue').addEventListener('click', () => go('schedule'));
  route('device-check', open);
}
