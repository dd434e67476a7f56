// Dates and times in the clinician's own words ("14:30", "3 May 1980", "Friday 6 March").

const LOCALE = 'en-GB';

function parse(value) {
  if (!value) return null;
  const when = value instanceof Date ? value : new Date(value);
  return Number.isNaN(when.getTime()) ? null : when;
}

/** "14:30" (local time). */
export function formatTime(value) {
  const when = parse(value);
  return when ? when.toLocaleTimeString(LOCALE, { hour: '2-digit', minute: '2-digit' }) : '';
}

/** "Friday 6 March 2026". */
export function formatDay(value) {
  const when = parse(value);
  return when ? when.toLocaleDateString(LOCALE, { weekday: 'long', day: 'numeric', month: 'long', year: 'numeric' }) : '';
}

/** "6 March 2026" for a date-only value such as a date of birth ("1980-05-03"), never shifted by time zone. */
export function formatDate(value) {
  if (typeof value === 'string' && /^\d{4}-\d{2}-\d{2}$/.test(value)) {
    const [y, m, d] = value.split('-').map(Number);
    return new Date(Date.UTC(y, m - 1, d)).toLocaleDateString(LOCALE, {
      day: 'numeric', month: 'long', year: 'numeric', timeZone: 'UTC',
    });
  }
  const when = parse(value);
  return when ? when.toLocaleDateString(LOCALE, { day: 'numeric', month: 'long', year: 'numeric' }) : '';
}

/** "6 March 2026 at 14:30". */
export function formatDateTime(value) {
  const when = parse(value);
  return when ? `${formatDate(when)} at ${formatTime(when)}` : '';
}

/** "YYYY-MM-DD" of a local date. */
export function isoDay(when = new Date()) {
  const pad = (n) => String(n).padStart(2, '0');
  return `${when.getFullYear()}-${pad(when.getMonth() + 1)}-${pad(when.getDate())}`;
}

/** "12:05" or "1:02:05": minutes and seconds (hours when needed). */
export function formatElapsed(ms) {
  const total = Math.max(0, Math.floor(ms / 1000));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  const pad = (n) => String(n).padStart(2, '0');
  return h > 0 ? `${h}:${pad(m)}:${pad(s)}` : `${m}:${pad(s)}`;
}

/** "less than a minute", "1 minute", "12 minutes". */
export function formatMinutes(ms) {
  const minutes = Math.floor(Math.max(0, ms) / 60000);
  if (minutes < 1) return 'less than a minute';
  return minutes === 1 ? '1 minute' : `${minutes} minutes`;
}

/** The local date and time plus its UTC offset, e.g. "2026-03-06T14:30:00+00:00". */
export function localIsoWithOffset(day, time) {
  const [y, m, d] = day.split('-').map(Number);
  const [hh, mm] = time.split(':').map(Number);
  const when = new Date(y, m - 1, d, hh, mm, 0, 0);
  const offset = -when.getTimezoneOffset();
  const sign = offset >= 0 ? '+' : '-';
  const abs = Math.abs(offset);
  const pad = (n) => String(n).padStart(2, '0');
  return `${y}-${pad(m)}-${pad(d)}T${pad(hh)}:${pad(mm)}:00${sign}${pad(Math.floor(abs / 60))}:${pad(abs % 60)}`;
}

/** The next quarter hour from now, as "HH:MM" and its local day. */
export function nextQuarterHour(now = new Date()) {
  const when = new Date(now.getTime());
  when.setSeconds(0, 0);
  const add = 15 - (when.getMinutes() % 15);
  when.setMinutes(when.getMinutes() + add);
  const pad = (n) => String(n).padStart(2, '0');
  return { day: isoDay(when), time: `${pad(when.getHours())}:${pad(when.getMinutes())}` };
}
