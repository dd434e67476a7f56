// Users: add (with a first password shown once), disable (never yourself), re-enable, reset
// the second sign-in step.

import { api } from './api.mjs';
import { $, el, clear, when, button, showError, announce, facts } from './dom.mjs';
import { ask } from './dialog.mjs';
import { show } from './screens.mjs';
import { problemWords, roleWords } from './words.mjs';

let me = null;

async function act(user, path, { title, body, confirm, danger, done }) {
  const answer = await ask({ title, body, confirm, danger, kind: path });
  if (!answer) return;
  try {
    await api('POST', `/admin/api/users/${encodeURIComponent(user.id)}/${path}`);
    await openUsers(null, { keepStatus: true });
    announce(done);
  } catch (failure) {
    announce(problemWords(failure), 'warning');
  }
}

function actions(user) {
  const name = user.display_name;
  const cell = el('div', { class: 'actions tight' });
  if (user.id === me) {
    cell.append(el('span', { class: 'sub', text: 'This is you' }));
  } else if (user.disabled) {
    cell.append(button('Re-enable', () => act(user, 'enable', {
      title: `Re-enable ${name}?`, body: 'They can sign in again with their password.', confirm: 'Re-enable', danger: false,
      done: `${name} can sign in again.`,
    }), { small: true, attrs: { 'aria-label': `Re-enable ${name}` } }));
  } else {
    cell.append(button('Disable…', () => act(user, 'disable', {
      title: `Disable ${name}?`, body: 'They are signed out everywhere at once and cannot sign in until re-enabled.',
      confirm: 'Disable the account', danger: true, done: `${name} is disabled and signed out.`,
    }), { small: true, kind: 'danger', attrs: { 'aria-label': `Disable ${name}` } }));
  }
  if (user.role === 'admin' && user.second_factor) {
    cell.append(button('Reset second step', () => act(user, 'reset-second-factor', {
      title: `Reset ${name}'s second sign-in step?`,
      body: 'Their authenticator app and recovery codes stop working. At their next sign-in they set up a new one. Do this only when you have checked who is asking.',
      confirm: 'Reset it', danger: true, done: `${name} will set up a new second sign-in step.`,
    }), { small: true, attrs: { 'aria-label': `Reset second step of ${name}` } }));
  }
  return cell;
}

function state(user) {
  if (user.disabled) return 'Disabled';
  if (user.locked) return 'Locked for a while (too many attempts)';
  return 'Active';
}

function usersTable(users) {
  const head = el('tr', {}, ['Name', 'Role', 'Prison', 'State', 'Second step', 'Last sign-in', 'Actions'].map((t) => el('th', { text: t, attrs: { scope: 'col' } })));
  const rows = users.map((u) => el(
    'tr',
    { data: { userId: u.id, username: u.username, disabled: u.disabled } },
    el('th', { attrs: { scope: 'row' } }, u.display_name, el('span', { class: 'sub mono', text: u.username })),
    el('td', { text: roleWords(u.role) }),
    el('td', { text: u.establishment || '—' }),
    el('td', { text: state(u) }),
    el('td', { text: u.role === 'admin' ? (u.second_factor ? 'Set up' : 'Not set up yet') : '—' }),
    el('td', { text: u.last_login_at ? when(u.last_login_at) : 'Never' }),
    el('td', {}, actions(u)),
  ));
  return el('table', { class: 'grid' }, el('caption', { text: `${users.length} accounts` }), el('thead', {}, head), el('tbody', {}, rows));
}

export async function openUsers(_params, { keepStatus = false } = {}) {
  if (me === null) me = (await api('GET', '/admin/api/session')).user.id;
  const users = await api('GET', '/admin/api/users');
  clear($('users-table')).append(usersTable(users));
  show('users', { keepStatus, focus: !keepStatus });
}

async function addUser(event) {
  event.preventDefault();
  const body = {
    display_name: $('user-name').value.trim(),
    username: $('user-username').value.trim().toLowerCase(),
    role: $('user-role').value,
    establishment: $('user-establishment').value.trim() || null,
  };
  showError($('user-error'), '');
  if (!body.display_name || body.username.length < 3) {
    showError($('user-error'), 'Type the full name and a username of at least 3 characters.');
    return;
  }
  try {
    const created = await api('POST', '/admin/api/users', body);
    const box = clear($('user-created'));
    box.append(
      el('h3', { text: `${created.user.display_name} can now sign in` }),
      el('p', { text: 'Give them this first password in person or by phone — it is shown only this once. They should change it after signing in.' }),
      facts([
        ['Username', created.user.username],
        ['First password', el('code', { class: 'secret', text: created.password, data: { password: '' } })],
      ]),
    );
    box.hidden = false;
    $('user-form').reset();
    await openUsers(null, { keepStatus: true });
    box.focus();
  } catch (failure) {
    showError($('user-error'), failure.code === 'already_exists' ? 'That username is taken. Choose another.' : problemWords(failure));
  }
}

export function bindUsers() {
  $('user-form').addEventListener('submit', addUser);
}
