// One modal dialog for confirmations (end the consultation) and short reasons (deny entry).
// <dialog>.showModal() makes the page behind inert; Tab is also kept inside, Escape cancels,
// and focus goes back to the button that opened it.

import { $ } from './screens.js';

let pending = null;

function focusables(dialog) {
  return [...dialog.querySelectorAll('button, textarea, input, select, a[href]')]
    .filter((node) => !node.disabled && !node.closest('[hidden]'));
}

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
 * Ask something; resolves to {reason} when confirmed, null when cancelled.
 * `reason` adds a text box ({label, hint}); `danger` styles the confirm button red.
 */
export function ask({ title, body, confirm, cancel = 'Cancel', danger = false, reason = null, kind = '' }) {
  if (pending) finish(null);
  const dialog = $('dialog');
  $('dialog-title').textContent = title;
  $('dialog-body').textContent = body || '';
  const confirmButton = $('dialog-confirm');
  confirmButton.textContent = confirm;
  confirmButton.className = danger ? 'control danger' : 'control primary';
  $('dialog-cancel').textContent = cancel;
  const field = $('dialog-field');
  const input = $('dialog-input');
  input.value = '';
  field.hidden = !reason;
  if (reason) {
    $('dialog-label').textContent = reason.label;
    $('dialog-input-hint').textContent = reason.hint || '';
  }
  dialog.dataset.kind = kind;
  const opener = document.activeElement;
  return new Promise((resolve) => {
    pending = { resolve, opener };
    dialog.showModal();
    // The safe choice first for destructive questions; the text box when one is asked for.
    if (reason) input.focus();
    else if (danger) $('dialog-cancel').focus();
    else confirmButton.focus();
  });
}

export function bindDialog() {
  const dialog = $('dialog');
  $('dialog-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const value = event.submitter ? event.submitter.value : 'confirm';
    if (value === 'confirm') finish({ reason: $('dialog-input').value.trim() });
    else finish(null);
  });
  dialog.addEventListener('cancel', (event) => {
    // Escape.
    event.preventDefault();
    finish(null);
  });
  dialog.addEventListener('keydown', (event) => {
    if (event.key !== 'Tab') return;
    const items = focusables(dialog);
    if (items.length === 0) return;
    const first = items[0];
    const last = items[items.length - 1];
    if (event.shiftKey && document.activeElement === first) {
      event.preventDefault();
      last.focus();
    } else if (!event.shiftKey && document.activeElement === last) {
      event.preventDefault();
      first.focus();
    }
  });
}

/** Close any open dialog (a screen change, the consultation ended). */
export function dismissDialog() {
  finish(null);
}
