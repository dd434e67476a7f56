// What the whole page shares: who is signed in, the laptop's posture, the consultation in
// hand, and how to go from one screen to another (each screen module registers itself).

export const app = {
  user: null,           // {id, username, display_name, role}
  device: null,         // {id, kind}
  posture: null,        // the agent's latest Posture
  schedule: [],         // today's consultations, as the agent gave them
  consultation: null,   // the schedule entry being prepared or called
};

const routes = new Map();

/** A screen module names the function that opens it. */
export function route(name, open) {
  routes.set(name, open);
}

/** Open a screen by name (see route()). */
export function go(name, ...args) {
  const open = routes.get(name);
  if (!open) throw new Error(`no route ${name}`);
  return Promise.resolve(open(...args)).catch((err) => {
    console.warn('screen failed', name, err && err.code ? err.code : err);
    const fail = routes.get('failure');
    if (fail && name !== 'failure') fail(err);
  });
}

/** Keep the schedule entry of a consultation up to date after a change (identity, consent, state). */
export function updateConsultation(id, changes) {
  for (const entry of app.schedule) if (entry.id === id) Object.assign(entry, changes);
  if (app.consultation && app.consultation.id === id) Object.assign(app.consultation, changes);
}

/** Plain words for a room-or-specialist participant, for the clinician. */
export function describeParticipant(p) {
  if (!p) return 'Someone';
  if (p.role === 'room') return p.name ? `The patient’s room (${p.name})` : 'The patient’s room';
  if (p.role === 'specialist') return p.name ? `${p.name} (specialist)` : 'The specialist';
  if (p.role === 'host') return p.name || 'The clinician';
  return p.name || 'Someone';
}
