// Plain words for the codes the audit log and the API use.

const ACTIONS = {
  'document.read': 'Read a document',
  'document.view': 'Looked at a document’s details',
  'document.list': 'Listed documents',
  'document.import': 'Imported a document',
  'document.share': 'Shared a document',
  'note.create': 'Wrote a note',
  'note.update': 'Changed a note',
  'note.read': 'Read a note',
  'note.list': 'Listed notes',
  'patient.view': 'Looked at patient details',
  'patient.read': 'Saw the patient on a schedule',
  'patient.create': 'Registered a patient',
  'patient.lookup': 'Looked up a patient',
  'patient.list': 'Listed patients',
  'grant.issue': 'Was given record access',
  'grant.renew': 'Renewed record access',
  'grant.revoke': 'Record access withdrawn',
  'grant.deny': 'Record access refused',
  'grant.use': 'Used record access',
  'breakglass.open': 'Broke the glass (emergency access)',
  'breakglass.review': 'Break-glass access signed off',
  'share.list': 'Listed shared documents',
  'share.access': 'Opened a shared document',
  'device.check': 'Device check',
  'device.enrol': 'Device enrolled',
  'device.revoke': 'Device revoked',
  'audit.query': 'Searched the audit log',
  'audit.export': 'Exported the audit log',
  'audit.verify': 'Checked the audit log',
  'admin.sign_in': 'Signed in to the admin console (password)',
  'admin.second_factor': 'Second sign-in step',
  'admin.enrol': 'Set up a second sign-in step',
  'admin.sign_out': 'Signed out of the admin console',
};

export function actionWords(action) {
  if (ACTIONS[action]) return ACTIONS[action];
  if (action.startsWith('consultation.')) return `Consultation ${action.slice(13).replaceAll('_', ' ')}`;
  if (action.startsWith('admin.')) return `Admin: ${action.slice(6).replaceAll('.', ' ').replaceAll('_', ' ')}`;
  return action;
}

const OUTCOMES = { allowed: 'Allowed', denied: 'Refused', success: 'Succeeded', failure: 'Failed' };

export function outcomeWords(outcome) {
  return OUTCOMES[outcome] || outcome;
}

const PURPOSES = {
  TREAT: 'Treatment',
  ETREAT: 'Emergency treatment (break-glass)',
  HSYSADMIN: 'System administration',
  HOPERAT: 'Healthcare operations',
};

export function purposeWords(code) {
  return code ? PURPOSES[code] || code : '';
}

const KINDS = { prison_laptop: 'Prison laptop', room_endpoint: 'Healthcare-room endpoint' };

export function kindWords(kind) {
  return KINDS[kind] || kind;
}

const STATES = {
  scheduled: 'Booked',
  open: 'Clinician waiting',
  live: 'In progress',
  ended: 'Ended',
  cancelled: 'Cancelled',
  no_show: 'Did not take place',
};

export function stateWords(state) {
  return STATES[state] || state;
}

const ROLES = { clinician: 'Clinician', specialist: 'Specialist', admin: 'Healthcare admin' };

export function roleWords(role) {
  return ROLES[role] || role || '';
}

/** What to tell a person for an API refusal (the server's detail is written for people too). */
export function problemWords(error) {
  const byCode = {
    network_error: 'The server cannot be reached. Check the connection and try again.',
    invalid_credentials: 'The username or password is not right. Check them and try again.',
    account_locked: 'This account is locked for a while after too many attempts. Try again later, or ask another admin.',
    login_throttled: 'Too many sign-in attempts. Wait a little, then try again.',
    invalid_code: 'That code is not right. Type the code your phone shows now.',
    code_reused: 'That code has already been used. Wait for the next code on your phone, then type it.',
    csrf_refused: 'This page is out of date. Reload it and try again.',
    session_expired: 'You were signed out. Please sign in again.',
  };
  return byCode[error.code] || error.message || 'Something went wrong. Try again.';
}
