// Small DOM helpers. Text only ever goes in through textContent: the page's CSP enforces
// Trusted Types, so any HTML-string sink would throw.

export function $(id) {
  const node = document.getElementById(id);
  if (!node) throw new Error(`missing element #${id}`);
  return node;
}

/**
 * el('td', {text: 'x', class: 'num', data: {seq: 4}, attrs: {scope: 'row'}, on: {click}}, ...children)
 */
export function el(tag, options = {}, ...children) {
  const node = document.createElement(tag);
  const { text, data, attrs, on } = options;
  if (options.class) node.className = options.class;
  if (text !== undefined && text !== null) node.textContent = String(text);
  for (const [key, value] of Object.entries(data || {})) {
    if (value !== undefined && value !== null) node.dataset[key] = String(value);
  }
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === true) node.setAttribute(key, '');
    else if (value !== false && value !== undefined && value !== null) node.setAttribute(key, String(value));
  }
  for (const [event, handler] of Object.entries(on || {})) node.addEventListener(event, handler);
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function clear(node) {
  node.replaceChildren();
  return node;
}

const dateTime = new Intl.DateTimeFormat('en-GB', { dateStyle: 'medium', timeStyle: 'medium' });
const timeOnly = new Intl.DateTimeFormat('en-GB', { hour: '2-digit', minute: '2-digit' });
const dayOnly = new Intl.DateTimeFormat('en-GB', { weekday: 'long', day: 'numeric', month: 'long', year: 'numeric' });

export function when(value) {
  if (!value) return '';
  const moment = new Date(value);
  return Number.isNaN(moment.getTime()) ? String(value) : dateTime.format(moment);
}

export function clock(value) {
  const moment = new Date(value);
  return Number.isNaN(moment.getTime()) ? String(value) : timeOnly.format(moment);
}

export function longDay(isoDay) {
  return dayOnly.format(new Date(`${isoDay}T12:00:00`));
}

export function todayIso() {
  const now = new Date();
  const pad = (n) => String(n).padStart(2, '0');
  return `${now.getFullYear()}-${pad(now.getMonth() + 1)}-${pad(now.getDate())}`;
}

/** Say something in the page's live region (screen readers read it out). */
export function announce(message, tone = '') {
  const status = $('status');
  status.dataset.tone = tone;
  status.textContent = message;
}

/** Show an error in a form's error box (role=alert) and mark the fields named. */
export function showError(box, message) {
  box.textContent = message || '';
  box.hidden = !message;
}

/** A <dl> of [label, value] pairs; values may be nodes. */
export function facts(pairs, className = 'details') {
  return el(
    'dl',
    { class: className },
    pairs
      .filter(([, value]) => value !== undefined && value !== null && value !== '')
      .map(([label, value, data]) => el('div', { data: data || {} }, el('dt', { text: label }), el('dd', {}, value))),
  );
}

export function button(label, onClick, { kind = '', small = false, data = {}, attrs = {} } = {}) {
  const classes = ['control', kind, small ? 'small' : ''].filter(Boolean).join(' ');
  return el('button', { class: classes, text: label, data, attrs: { type: 'button', ...attrs }, on: { click: onClick } });
}
