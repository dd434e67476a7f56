// One state at a time: the section whose data-screen matches, in words, with the names and
// times the agent gave. Text only ever goes in through textContent.

import { formatTime } from '/shared/js/format.js';

const $ = (id) => document.getElementById(id);
const SCREENS = ['starting', 'idle', 'booked', 'waiting', 'call', 'ended', 'reconnecting', 'unavailable'];

function bookedTitle(title, clinician, startsAt) {
  while (title.firstChild) title.firstChild.remove();
  const who = document.createElement('span');
  who.className = 'who';
  who.textContent = clinician || 'your clinician';
  title.append('Your appointment with ', who);
  const time = formatTime(startsAt);
  if (time) {
    const at = document.createElement('span');
    at.className = 'time';
    at.textContent = time;
    title.append(' starts at ', at);
  } else {
    title.append(' starts soon');
  }
}

/**
 * Show a room.state. In a call, a lost link is a banner over the pictures (they often go on
 * peer to peer) rather than a screen of its own.
 */
export function show(state, { linkDown = false } = {}) {
  let screen = SCREENS.includes(state.screen) ? state.screen : 'starting';
  const inCall = Boolean(state.call) && (screen === 'call' || screen === 'reconnecting');
  const reconnecting = linkDown || screen === 'reconnecting';
  if (inCall) screen = 'call';
  else if (linkDown) screen = 'reconnecting';

  if (screen === 'booked') bookedTitle($('booked-title'), state.clinician, state.starts_at);
  $('call-title').textContent = `Your appointment with ${state.clinician || 'your clinician'}`;
  $('call-banner').hidden = !(inCall && reconnecting);

  const body = document.body;
  const previous = body.dataset.screen;
  body.dataset.reconnecting = inCall && reconnecting ? 'yes' : 'no';
  body.dataset.reason = linkDown ? 'agent' : state.reason || '';
  for (const section of document.querySelectorAll('main > section[data-screen]')) {
    section.hidden = section.dataset.screen !== screen;
  }
  body.dataset.screen = screen;
  const heading = document.querySelector(`section[data-screen="${screen}"] h1`);
  const words = screen === 'call' && inCall && reconnecting ? $('call-banner').textContent : heading.textContent;
  document.title = `${words} – Telemed`;
  if (previous !== screen || screen === 'call') {
    $('status').textContent = words;
    if (previous !== screen) heading.focus({ preventScroll: true });
  }
}
