// One modal dialog for confirmations and for short comments (escalate, revoke, cancel).
// showModal() makes the page behind inert; Escape cancels; focus returns to the opener.

import { $, showError } from './dom.mjs';

let pending = null;

function finish(result) {
  const dialog = $('dialog');
  if (!pending) return;
  const { resolve, opener } = pending;
  pending = null;
  if (dialog.open) dialog.close();
  if (opener && opener.isConnected && typeof opener.focus === 'function') opener.focus();
  resolve(result);
}

/**
 * Ask for confirmation; resolves to {text} when confirmed, null when cancelled.
 * `input` adds a text box ({label, hint, required}); `danger` makes the confirm button red.
 */
export function ask({ title, body = '', confirm, cancel = 'Cancel', danger = false, input = null, kind = '' }) {
  if (pending) finish(null);
  const dialog = $('dialog');
  $('dialog-title').textContent = title;
  $('dialog-body').textContent = body;
  const confirmButton = $('dialog-confirm');
  confirmButton.textContent = confirm;
  confirmButton.className = danger ? 'control danger' : 'control primary';
  $('dialog-cancel').textContent = cancel;
  const box = $('dialog-input');
  box.value = '';
  box.removeAttribute('aria-invalid');
  $('dialog-field').hidden = !input;
  showError($('dialog-error'), '');
  if (input) {
    $('dialog-label').textContent = input.label;
    $('dialog-hint').textContent = input.hint || '';
  }
  dialog.dataset.kind = kind;
  dialog.dataset.required = input && input.required ? 'true' : 'false';
  const opener = document.activeElement;
  return new Promise((resolve) => {
    pending = { resolve, opener };
    dialog.showModal();
    if (input) box.focus();
    else if (danger) $('dialog-cancel').focus();
    else confirmButton.focus();
  });
}

export function bindDialog() {
  const dialog = $('dialog');
  $('dialog-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const value = event.submitter ? event.submitter.value : 'confirm';
    if (value !== 'confirm') {
      finish(null);
      return;
    }
    const text = $('dialog-input').value.trim();
    if (dialog.dataset.required === 'true' && !text) {
      $('dialog-input').setAttribute('aria-invalid', 'true');
      showError($('dialog-error'), 'Please write a few words here first.');
      $('dialog-input').focus();
      return;
    }
    finish({ text });
  });
  dialog.addEventListener('cancel', (event) => {
    event.preventDefault();
    finish(null);
  });
}
