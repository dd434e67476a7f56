// Book a consultation: the prison number from the referral, confirm the name and birth date,
// then room, day, start (the next quarter hour) and length. Nothing typed that the product knows.

import { api, paths } from './api.js';
import { go, route } from './app.js';
import { formatDate, formatTime, localIsoWithOffset, nextQuarterHour } from './format.js';
import { $, clear, h, plainError, show } from './screens.js';

let found = null;   // the patient the lookup found

function setBox(id, text) {
  const box = $(id);
  box.textContent = text || '';
  box.hidden = !text;
}

function updateSubmit() {
  const ready = Boolean(found) && $('book-confirm').checked;
  $('book-when').disabled = !ready;
  $('book-submit').disabled = !ready;
}

function resetPatient() {
  found = null;
  $('book-patient').hidden = true;
  $('book-confirm').checked = false;
  $('book-prison-number').removeAttribute('aria-invalid');
  updateSubmit();
}

async function findPatient() {
  const input = $('book-prison-number');
  const number = input.value.trim().toUpperCase();
  resetPatient();
  setBox('book-lookup-error', '');
  if (!number) {
    setBox('book-lookup-error', 'Type the prison number from the referral.');
    input.setAttribute('aria-invalid', 'true');
    input.focus();
    return;
  }
  const button = $('book-find');
  button.disabled = true;
  try {
    found = await api(paths.lookup(number));
    $('book-patient-name').textContent = found.name;
    $('book-patient-number').textContent = found.prison_number;
    $('book-patient-dob').textContent = formatDate(found.date_of_birth);
    $('book-patient').hidden = false;
    $('book-confirm').focus();
  } catch (err) {
    found = null;
    input.setAttribute('aria-invalid', 'true');
    if (err.status === 404 || err.status === 422) {
      setBox('book-lookup-error', `No patient has the prison number ${number}. Check the number on the referral.`);
    } else {
      setBox('book-lookup-error', plainError(err, 'The patient could not be looked up. Please try again.'));
    }
    input.focus();
  } finally {
    button.disabled = false;
    updateSubmit();
  }
}

async function loadRooms() {
  const select = $('book-room');
  clear(select);
  let rooms = [];
  try {
    rooms = await api(paths.rooms);
  } catch (err) {
    if (err.code === 'no_session' || err.code === 'device_not_compliant') throw err;
    setBox('book-error', plainError(err, 'The list of rooms could not be loaded. You can still book without a room.'));
  }
  // One group per establishment, in the server's order.
  const groups = new Map();
  for (const room of Array.isArray(rooms) ? rooms : []) {
    const key = room.establishment || 'Rooms';
    if (!groups.has(key)) groups.set(key, h('optgroup', { label: key }));
    groups.get(key).append(h('option', { value: room.id }, room.display_name || room.id));
  }
  for (const group of groups.values()) select.append(group);
  select.append(h('option', { value: '' }, 'No room: the patient is with me, a specialist joins'));
  select.selectedIndex = 0;
}

async function open() {
  $('book-form').reset();
  resetPatient();
  setBox('book-lookup-error', '');
  setBox('book-error', '');
  const start = nextQuarterHour();
  $('book-date').value = start.day;
  $('book-date').min = start.day;
  $('book-time').value = start.time;
  $('book-minutes').value = '30';
  show('book');
  await loadRooms();
}

async function submit(event) {
  event.preventDefault();
  if (!found || !$('book-confirm').checked) return;
  setBox('book-error', '');
  const day = $('book-date').value;
  const time = $('book-time').value;
  if (!day || !time) {
    setBox('book-error', 'Choose the day and the start time.');
    (day ? $('book-time') : $('book-date')).focus();
    return;
  }
  const room = $('book-room').value || null;
  const specialist = $('book-specialist').value.trim();
  if (!room && !specialist) {
    // Nobody to call: the service refuses a consultation with neither a room nor a specialist.
    setBox('book-error', 'Choose the patient’s room, or type the name of the specialist who will join.');
    $('book-room').focus();
    return;
  }
  const start = localIsoWithOffset(day, time);
  if (Date.parse(start) < Date.now() - 5 * 60000) {
    setBox('book-error', 'That time has already passed. Choose a later start time.');
    $('book-time').focus();
    return;
  }
  const button = $('book-submit');
  button.disabled = true;
  try {
    await api(paths.consultations, {
      method: 'POST',
      body: {
        patient_id: found.id,
        room_device_id: room,
        start,
        minutes: Number($('book-minutes').value),
        ...(specialist ? { specialist_name: specialist } : {}),
      },
    });
    await go('schedule', { announceText: `Booked: ${found.name} at ${formatTime(start)}.` });
  } catch (err) {
    const text = err.status === 409
      ? 'That room is already booked at that time. Choose another time or another room.'
      : err.status === 422
        ? 'Some details are not right. Check the room or specialist, the day, the start time and the length.'
        : plainError(err, 'The consultation could not be booked. Please try again.');
    setBox('book-error', text);
  } finally {
    updateSubmit();
  }
}

export function bindBooking() {
  $('book-find').addEventListener('click', findPatient);
  $('book-prison-number').addEventListener('keydown', (event) => {
    // Enter in the prison number looks the patient up; it never books.
    if (event.key === 'Enter') {
      event.preventDefault();
      findPatient();
    }
  });
  $('book-prison-number').addEventListener('input', () => {
    if (found) resetPatient();
  });
  $('book-confirm').addEventListener('change', updateSubmit);
  $('book-form').addEventListener('submit', submit);
  $('book-back').addEventListener('click', () => go('schedule'));
  route('book', open);
}
