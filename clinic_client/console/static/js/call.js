// The call, from the host's side: the signalling bridge (WS /api/signalling, protocol v1 through
// the agent), the camera, one Peer per admitted participant, the waiting room, start and end,
// the laptop's posture while the call runs, and the records panel once the consultation is live.

import { api, paths } from './api.js';
import { app, describeParticipant, go, route, updateConsultation } from './app.js';
import { ask, dismissDialog } from './dialog.js';
import { formatElapsed, formatTime } from './format.js';
import { Peer } from './peer.js';
import { renderChecklist, setInviteStatus } from './prepare.js';
import { closeRecords, openRecords, refreshSharing } from './records.js';
import { $, announce, clear, h, onLeaveScreen, show, showMessage } from './screens.js';
import { showLaptopState } from './signin.js';
import { renderWaiting, resetWaiting } from './waiting.js';

const STATS_EVERY_MS = 2000;
const PING_EVERY_MS = 15000;
const MAX_SOCKET_RETRIES = 3;
const PROMPT_AFTER_SAMPLES = 2;

let call = null;

function fresh(c) {
  return {
    c,
    socket: null,
    me: null,
    welcomed: false,
    status: null,                 // admitted | suspended (the host is never "waiting")
    consultationState: c.state,
    iceServers: [],
    icePolicy: 'relay',
    participants: new Map(),
    peers: new Map(),
    localStream: null,
    micOn: true,
    cameraOn: true,
    audioOnly: false,
    pending: new Map(),           // message id -> what we asked
    seq: 0,
    timers: [],
    retries: 0,
    finished: false,
    ending: false,
    lastError: null,
    agentCloseCode: null,
    replaced: false,
    poorSamples: 0,
    promptDismissed: false,
    suspendedReason: null,
  };
}

// --- screen ----------------------------------------------------------------------------

async function open(c) {
  const consultation = c || app.consultation;
  if (!consultation) return go('schedule');
  if (call) hangUp();
  app.consultation = consultation;
  call = fresh(consultation);
  const patient = consultation.patient || {};
  $('call-title').textContent = `Consultation with ${patient.name || 'the patient'}`;
  clear($('remote-grid'));
  resetWaiting();
  closeRecords();
  setSuspended(null);
  $('quality').hidden = true;
  $('quality-prompt').hidden = true;
  updateControls();
  setPhase('connecting');
  renderSide();
  showPosture();
  show('call', { title: `Consultation with ${patient.name || 'the patient'}` });
  const mine = call;
  onLeaveScreen(() => {
    if (call === mine) hangUp();
  });
  try {
    await openCamera();
  } catch (err) {
    if (call !== mine) return undefined;
    hangUp();
    showMessage(err.kind || 'camera_refused', { onAction: () => go('call', consultation) });
    return undefined;
  }
  if (call !== mine) return undefined;
  connect();
  return undefined;
}

function setPhase(phase) {
  const words = {
    connecting: 'Connecting…',
    open: 'Not started yet',
    live: 'In progress',
    paused: 'Paused',
    reconnecting: 'Reconnecting…',
  };
  const node = $('call-phase');
  node.dataset.phase = phase;
  node.textContent = words[phase] || '';
  document.body.dataset.callPhase = phase;
}

function showPosture() {
  const line = $('call-posture');
  const p = app.posture;
  line.dataset.compliant = p ? String(Boolean(p.compliant)) : '';
  if (!p) line.textContent = 'This laptop has not been checked yet.';
  else if (p.compliant) {
    line.textContent = `This laptop passed its security check at ${formatTime(p.checked_at)}. It is checked again every few minutes.`;
  } else line.textContent = 'This laptop did not pass its last security check.';
}

/** The side panel: the checklist and Start before live; the records once live. */
function renderSide() {
  const before = $('side-prepare');
  clear(before);
  if (!call || call.finished) return;
  if (call.consultationState === 'live') {
    $('side-title').textContent = 'Patient’s records';
    before.hidden = true;
    if (call.status === 'admitted') {
      openRecords(call.c.id, { specialists: admittedSpecialists });
    } else {
      closeRecords();
      $('records').append(h('p', { className: 'empty' }, 'The records are hidden while the call is paused.'));
    }
    return;
  }
  closeRecords();
  $('side-title').textContent = 'Before you start';
  before.hidden = false;
  const checklist = h('div', {});
  renderChecklist(checklist, call.c, { level: 'h3', onChange: renderSide, allowCancel: false });
  const ready = call.c.identity_confirmed_at && call.c.consent_recorded_at;
  const start = h('button', { type: 'button', className: ready ? 'control primary' : 'control', id: 'call-start', dataset: { action: 'start' } }, 'Start the consultation');
  start.addEventListener('click', startConsultation);
  const hint = h('p', { className: 'sub', id: 'call-start-hint' }, ready
    ? 'Start when everyone you need is in the call. The patient’s records open when it starts.'
    : 'Confirm who the patient is and record their consent first.');
  start.setAttribute('aria-describedby', 'call-start-hint');
  const leave = h('button', { type: 'button', className: 'control', dataset: { action: 'leave-call' } }, 'Back to today’s consultations');
  leave.addEventListener('click', () => go('schedule'));
  // Ready: Start is the one next step, so it comes first; otherwise the checklist does.
  if (ready) before.append(h('div', { className: 'actions' }, start), hint, checklist, h('div', { className: 'actions' }, leave));
  else before.append(checklist, h('div', { className: 'actions' }, start), hint, h('div', { className: 'actions' }, leave));
}

function admittedSpecialists() {
  if (!call) return [];
  return [...call.participants.values()].filter((p) => p.role === 'specialist' && p.status === 'admitted');
}

// --- camera ----------------------------------------------------------------------------

async function openCamera() {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia || typeof RTCPeerConnection !== 'function') {
    throw Object.assign(new Error('no media'), { kind: 'camera_missing' });
  }
  try {
    call.localStream = await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
      video: { width: { ideal: 1280 }, height: { ideal: 720 }, facingMode: 'user' },
    });
  } catch (err) {
    const name = err && err.name;
    const kind = name === 'NotFoundError' || name === 'OverconstrainedError' || name === 'NotReadableError'
      ? 'camera_missing' : 'camera_refused';
    throw Object.assign(new Error('camera'), { kind });
  }
  $('self-video').srcObject = call.localStream;
  $('self-video').play().catch(() => {});
}

function stopCamera(state) {
  if (state.localStream) for (const track of state.localStream.getTracks()) track.stop();
  state.localStream = null;
  $('self-video').srcObject = null;
}

function updateControls() {
  const s = call || { micOn: true, cameraOn: true, audioOnly: false };
  const mic = $('call-mic');
  mic.textContent = s.micOn ? 'Mute microphone' : 'Unmute microphone';
  mic.setAttribute('aria-pressed', String(!s.micOn));
  const cam = $('call-camera');
  cam.textContent = s.cameraOn ? 'Turn camera off' : 'Turn camera on';
  cam.setAttribute('aria-pressed', String(!s.cameraOn));
  cam.disabled = s.audioOnly;
  const audio = $('call-audio-only');
  audio.textContent = s.audioOnly ? 'Turn video back on' : 'Audio only';
  audio.setAttribute('aria-pressed', String(s.audioOnly));
  document.body.classList.toggle('audio-only', s.audioOnly);
  const notes = [];
  if (!s.micOn) notes.push('Microphone off');
  if (!s.cameraOn || s.audioOnly) notes.push('Camera off');
  $('self-state').textContent = notes.join(' · ');
  $('call-fullscreen').textContent = document.fullscreenElement ? 'Leave full screen' : 'Full screen';
}

function toggleMic() {
  if (!call) return;
  call.micOn = !call.micOn;
  if (call.localStream) for (const t of call.localStream.getAudioTracks()) t.enabled = call.micOn;
  updateControls();
  announce(call.micOn ? 'Your microphone is on.' : 'Your microphone is muted. Nobody can hear you.');
}

function toggleCamera() {
  if (!call) return;
  call.cameraOn = !call.cameraOn;
  // A disabled track sends black frames: no renegotiation, the connection stays up.
  if (call.localStream) for (const t of call.localStream.getVideoTracks()) t.enabled = call.cameraOn;
  updateControls();
  announce(call.cameraOn ? 'Your camera is on.' : 'Your camera is off. Nobody can see you.');
}

async function setAudioOnly(on) {
  if (!call) return;
  call.audioOnly = on;
  // Stop sending our picture at all (it saves the laptop's mobile link), and hide theirs.
  for (const peer of call.peers.values()) await peer.setVideoSending(!on);
  if (call.localStream) for (const t of call.localStream.getVideoTracks()) t.enabled = !on && call.cameraOn;
  if (on) $('quality-prompt').hidden = true;
  updateControls();
  announce(on ? 'Audio only: your picture is no longer sent and the others’ pictures are hidden.' : 'Video is back on.');
}

async function toggleFullscreen() {
  try {
    if (document.fullscreenElement) await document.exitFullscreen();
    else await document.querySelector('.call-main').requestFullscreen();
  } catch (_) {
    announce('Full screen is not available here.', 'warning');
  }
  updateControls();
}

async function endConsultation() {
  if (!call || call.finished) return;
  const answer = await ask({
    title: 'End the consultation for everyone?',
    body: 'The call stops for everyone and the patient’s records close on this laptop. Save your note first if you have not.',
    confirm: 'End the consultation',
    cancel: 'Keep the consultation going',
    danger: true,
    kind: 'end',
  });
  if (!answer || !call || call.finished) return;
  call.ending = true;
  if (!send({ type: 'end', reason: 'Consultation complete' }, { what: 'end' })) {
    announce('The consultation could not be ended: the connection is down. Try again in a moment.', 'warning');
    call.ending = false;
    return;
  }
  announce('Ending the consultation…');
}

function startConsultation() {
  if (!call) return;
  const c = call.c;
  if (!c.identity_confirmed_at || !c.consent_recorded_at) {
    announce(!c.identity_confirmed_at ? 'Confirm who the patient is first.' : 'Record the patient’s consent first.', 'warning');
    const target = document.querySelector('#side-prepare [data-action="confirm-identity"], #side-prepare [data-action="record-consent"]');
    if (target) target.focus();
    return;
  }
  if (send({ type: 'start' }, { what: 'start' })) announce('Starting the consultation…');
}

// --- signalling ------------------------------------------------------------------------

function socketUrl() {
  const scheme = window.location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${window.location.host}${paths.signalling}`;
}

/** Send a protocol message through the agent; `pending` remembers what an ack/error is about. */
function send(message, pending) {
  const ws = call && call.socket;
  if (!ws || ws.readyState !== WebSocket.OPEN) return false;
  const out = { v: 1, ...message };
  if (pending) {
    call.seq += 1;
    out.id = `c${call.seq}`;
    call.pending.set(out.id, pending);
  }
  ws.send(JSON.stringify(out));
  return true;
}

function connect() {
  const state = call;
  let ws;
  try {
    ws = new WebSocket(socketUrl());
  } catch (_) {
    finish('connection_lost');
    return;
  }
  state.socket = ws;
  ws.onopen = () => {
    if (call !== state) return;
    ws.send(JSON.stringify({ type: 'join', consultation_id: state.c.id }));
  };
  ws.onmessage = (event) => {
    if (call !== state || state.socket !== ws || typeof event.data !== 'string') return;
    let m;
    try {
      m = JSON.parse(event.data);
    } catch (_) {
      return;
    }
    if (!m || typeof m.type !== 'string') return;
    Promise.resolve(handle(m)).catch((err) => console.warn('signalling message failed', m.type, err && err.name));
  };
  ws.onclose = (event) => {
    if (call !== state || state.socket !== ws) return;
    state.socket = null;
    onClosed(event.code);
  };
  const ping = setInterval(() => {
    if (call === state && state.socket === ws) send({ type: 'ping' });
  }, PING_EVERY_MS);
  state.timers.push(ping);
}

function onClosed(code) {
  const state = call;
  if (!state || state.finished) return;
  const closeCode = state.agentCloseCode !== null ? state.agentCloseCode : code;
  if (closeCode === 4410 || (state.ending && (code === 1000 || code === 1005))) return finish('ended');
  if (state.replaced || closeCode === 4409) return finish('replaced');
  const err = state.lastError;
  if (err && err.code === 'device_not_compliant') {
    hangUp();
    announce('This laptop must pass its security check before it can join the call.', 'warning');
    return go('device-check', { run: false });
  }
  if (err && (err.code === 'consultation_closed' || err.code === 'consultation_not_found')) return finish('consultation_over');
  if (!state.welcomed && err) return finish('join_failed', joinFailureHint(err));
  if (closeCode === 4403 || closeCode === 4401 || closeCode === 4404 || closeCode === 4400 || closeCode === 4429) {
    return finish('join_failed', err ? joinFailureHint(err) : undefined);
  }
  // The agent or its link dropped: join again (the hub lets the host straight back in).
  if (state.retries < MAX_SOCKET_RETRIES) {
    state.retries += 1;
    state.agentCloseCode = null;
    state.lastError = null;
    setPhase('reconnecting');
    announce('The connection to the call was interrupted. Reconnecting…', 'warning');
    const timer = setTimeout(() => {
      if (call === state && !state.finished) connect();
    }, 1000 * state.retries);
    state.timers.push(timer);
    return undefined;
  }
  return finish('connection_lost');
}

function joinFailureHint(err) {
  switch (err.code) {
    case 'server_unreachable':
    case 'service_unavailable':
      return 'We cannot reach the Telemed service. Check that the laptop’s mobile connection is on, then try again.';
    case 'unauthenticated':
    case 'no_session':
      return 'Your sign-in has run out. Sign in again, then open the consultation.';
    case 'forbidden':
    case 'not_host':
      return 'Only the clinician who hosts this consultation can open its call.';
    case 'posture_refused':
    case 'posture_required':
      return 'This laptop’s security check was not accepted. Check the laptop again, then try once more.';
    default:
      return undefined;
  }
}

async function handle(m) {
  const state = call;
  if (!state || state.finished) return;
  switch (m.type) {
    case 'welcome':
      return onWelcome(m, false);
    case 'agent.reconnected':
      if (m.welcome) onWelcome(m.welcome, true);
      return undefined;
    case 'agent.reconnecting':
      setPhase('reconnecting');
      announce('The connection to the Telemed service was interrupted. Reconnecting… The picture and sound may carry on.', 'warning');
      return undefined;
    case 'agent.posture':
      return onPosture(m.posture);
    case 'agent.closed':
      state.agentCloseCode = typeof m.close_code === 'number' ? m.close_code : null;
      return undefined;
    case 'error':
      return onError(m);
    case 'ack':
      return onAck(m);
    case 'ice_servers':
      useIceServers(m);
      return undefined;
    case 'admitted':
      return onReinstated(m.participants || []);
    case 'suspended':
      return onSuspended(m.reason);
    case 'replaced':
      state.replaced = true;
      return undefined;
    case 'consultation.live':
      return onLive();
    case 'consultation.ended':
      return finish('ended');
    case 'participant.joined':
    case 'participant.admitted':
    case 'participant.returned':
    case 'participant.denied':
    case 'participant.suspended':
    case 'participant.disconnected':
    case 'participant.resumed':
    case 'participant.left':
      return onParticipant(m.type, m.participant, m.reason);
    case 'offer': {
      const peer = peerFor(m);
      if (peer) peer.run(() => peer.onOffer(m));
      return undefined;
    }
    case 'answer': {
      const peer = state.peers.get(m.from);
      if (peer) peer.run(() => peer.onAnswer(m));
      return undefined;
    }
    case 'ice': {
      const peer = state.peers.get(m.from);
      if (peer) peer.run(() => peer.onIce(m));
      return undefined;
    }
    default:
      return undefined;   // pong, posture.accepted
  }
}

function useIceServers(m) {
  call.iceServers = (m.ice_servers || []).map((s) => {
    const server = { urls: s.urls };
    if (s.username) server.username = s.username;
    if (s.credential) server.credential = s.credential;
    return server;
  });
  call.icePolicy = m.ice_policy === 'all' ? 'all' : 'relay';
}

function onWelcome(m, resumed) {
  const state = call;
  const first = !state.welcomed;
  state.welcomed = true;
  state.retries = 0;
  state.me = m.participant_id;
  useIceServers(m);
  state.participants.clear();
  for (const p of m.participants || []) if (p.id !== state.me) state.participants.set(p.id, p);
  if (m.consultation_state) state.consultationState = m.consultation_state;
  updateConsultation(state.c.id, { state: state.consultationState });
  state.status = m.status === 'suspended' ? 'suspended' : 'admitted';
  if (state.status === 'suspended') {
    onSuspended('posture_refused');
  } else {
    setSuspended(null);
    syncPeers({ recover: resumed || !first });
  }
  if (state.consultationState === 'live') markLive();
  setPhase(state.status === 'suspended' ? 'paused' : state.consultationState === 'live' ? 'live' : 'open');
  refreshWaiting();
  for (const p of state.participants.values()) if (p.role === 'specialist') setInviteStatus(p.id, p.status);
  renderSide();
  if (resumed || !first) announce('Connected again.');
  else if (waitingCount() > 0) announceWaiting();
  else announce('You are in the call. Nobody else has joined yet.');
}

function waitingCount() {
  return [...call.participants.values()].filter((p) => p.status === 'waiting').length;
}

function announceWaiting() {
  const waiting = [...call.participants.values()].filter((p) => p.status === 'waiting');
  if (waiting.length === 1) announce(`${describeParticipant(waiting[0])} is waiting. Let them in when you are ready.`);
  else if (waiting.length > 1) announce(`${waiting.length} are waiting to join.`);
}

/** Peers for exactly the admitted others (while we are admitted ourselves). */
function syncPeers({ recover = false } = {}) {
  const state = call;
  const wanted = new Set(state.status === 'admitted'
    ? [...state.participants.values()].filter((p) => p.status === 'admitted').map((p) => p.id) : []);
  for (const id of [...state.peers.keys()]) if (!wanted.has(id)) removePeer(id);
  for (const id of wanted) {
    const view = state.participants.get(id);
    const existing = state.peers.get(id);
    if (existing) {
      existing.setView(view);
      if (recover && existing.broken()) existing.recoverSoon(0);
    } else {
      addPeer(view);
    }
  }
  if (state.peers.size) startStats();
  else stopStats();
  refreshSharing();
}

function peerContext() {
  const state = call;
  return {
    me: state.me,
    grid: $('remote-grid'),
    send: (msg) => send(msg),
    iceServers: () => state.iceServers,
    icePolicy: () => state.icePolicy,
    localStream: () => state.localStream,
    audioOnly: () => state.audioOnly,
    stillWanted: (peer) => call === state && state.peers.get(peer.id) === peer && state.status === 'admitted',
    onSendBack: (peer) => sendBack(peer.view),
  };
}

function addPeer(view) {
  const peer = new Peer(view, peerContext());
  call.peers.set(view.id, peer);
  if (!peer.polite) {
    peer.run(() => peer.offerFresh());
  } else {
    // The other side offers; if nothing comes in time, offer ourselves.
    const timer = setTimeout(() => {
      if (call && call.peers.get(peer.id) === peer && !peer.pc) peer.recoverSoon(0);
    }, 15000);
    call.timers.push(timer);
  }
  return peer;
}

function removePeer(id) {
  const peer = call.peers.get(id);
  if (!peer) return;
  call.peers.delete(id);
  peer.close();
}

function peerFor(m) {
  const state = call;
  if (state.status !== 'admitted' || typeof m.from !== 'string') return null;
  const existing = state.peers.get(m.from);
  if (existing) return existing;
  // An offer can overtake "participant.admitted"; the hub relays only between the admitted.
  const view = state.participants.get(m.from) || { id: m.from, role: m.from.split(':')[0], name: '', status: 'admitted' };
  const peer = new Peer(view, peerContext());
  state.peers.set(peer.id, peer);
  return peer;
}

function onParticipant(type, p, reason) {
  const state = call;
  if (!p || p.id === state.me) return;
  const who = describeParticipant(p);
  if (type === 'participant.left' || type === 'participant.denied') state.participants.delete(p.id);
  else state.participants.set(p.id, p);
  if (p.role === 'specialist') {
    const status = type === 'participant.left' ? 'left' : type === 'participant.denied' ? 'denied' : p.status;
    setInviteStatus(p.id, status);
  }
  switch (type) {
    case 'participant.joined':
      if (p.status === 'waiting') announce(`${who} is waiting. Let them in when you are ready.`);
      break;
    case 'participant.admitted':
      announce(`${who} is in the call.`);
      break;
    case 'participant.returned':
      announce(reason === 'posture_restored' ? `${who} passed its security check again and is waiting.` : `${who} is back in the waiting room.`);
      break;
    case 'participant.denied':
      announce(`${who} was turned away.`);
      break;
    case 'participant.left':
      announce(reason === 'timeout' ? `${who} lost the connection and has left.` : `${who} has left.`);
      break;
    case 'participant.suspended':
      announce(`${who} is paused: their device failed its security check.`, 'warning');
      break;
    case 'participant.disconnected': {
      const peer = state.peers.get(p.id);
      if (peer) peer.setNote('Connection interrupted. Waiting for them to come back…');
      break;
    }
    case 'participant.resumed': {
      const peer = state.peers.get(p.id);
      if (peer) {
        peer.setNote('');
        if (peer.broken()) peer.recoverSoon(0);
      }
      break;
    }
    default:
      break;
  }
  syncPeers();
  refreshWaiting();
}

function refreshWaiting() {
  renderWaiting([...call.participants.values()], { admit, deny });
}

function admit(p) {
  if (send({ type: 'admit', participant: p.id }, { what: 'admit', participant: p })) {
    announce(`Letting in ${describeParticipant(p)}…`);
  }
}

async function deny(p) {
  const who = describeParticipant(p);
  const answer = await ask({
    title: `Turn away ${who}?`,
    body: 'They will not be able to join this consultation again with this link or booking.',
    confirm: 'Turn away',
    cancel: 'Keep them waiting',
    danger: true,
    reason: { label: 'Reason (optional)', hint: 'They will read this. Up to 200 characters.' },
    kind: 'deny',
  });
  if (!answer || !call) return;
  const message = { type: 'deny', participant: p.id };
  if (answer.reason) message.reason = answer.reason.slice(0, 200);
  send(message, { what: 'deny', participant: p });
}

function sendBack(p) {
  if (send({ type: 'return_to_waiting', participant: p.id }, { what: 'return', participant: p })) {
    announce(`Sending ${describeParticipant(p)} back to the waiting room…`);
  }
}

function onAck(m) {
  if (m.ref) call.pending.delete(m.ref);
}

function onError(m) {
  const state = call;
  const asked = m.ref ? state.pending.get(m.ref) : null;
  if (m.ref) state.pending.delete(m.ref);
  if (!state.welcomed) {
    // The join itself failed; the agent closes the socket next.
    state.lastError = { code: m.code || 'join_failed' };
    return;
  }
  if (!asked) return;
  const who = asked.participant ? describeParticipant(asked.participant) : '';
  let text;
  if (asked.what === 'start') {
    const said = String(m.message || '');
    if (m.code === 'invalid_state' && /identity/i.test(said)) text = 'The consultation cannot start until you confirm who the patient is.';
    else if (m.code === 'invalid_state' && /consent/i.test(said)) text = 'The consultation cannot start until you record the patient’s consent.';
    else if (m.code === 'suspended') text = 'The consultation cannot start while this laptop fails its security check.';
    else text = 'The consultation could not start. Please try again.';
  } else if (asked.what === 'end') {
    state.ending = false;
    text = 'The consultation could not be ended. Please try again.';
  } else if (m.code === 'unknown_participant') {
    text = `${who} is no longer here.`;
  } else if (m.code === 'suspended') {
    text = 'You cannot do that while the call is paused.';
  } else {
    text = asked.what === 'admit' ? `${who} could not be let in. Please try again.`
      : asked.what === 'deny' ? `${who} could not be turned away. Please try again.`
        : `${who} could not be sent back. Please try again.`;
  }
  announce(text, 'warning');
}

function onLive() {
  updateConsultation(call.c.id, { state: 'live' });
  call.consultationState = 'live';
  markLive();
  setPhase(call.status === 'suspended' ? 'paused' : 'live');
  renderSide();
  announce('The consultation has started. The patient’s records are beside the call.');
}

/** The elapsed-time clock, counted from when this page first saw the consultation live. */
function markLive() {
  const key = `telemed.console.live.${call.c.id}`;
  let since = null;
  try {
    since = Number(sessionStorage.getItem(key)) || null;
    if (!since) {
      since = Date.now();
      sessionStorage.setItem(key, String(since));
    }
  } catch (_) {
    since = since || Date.now();
  }
  if (call.elapsedTimer) return;
  const node = $('call-elapsed');
  const tick = () => {
    const text = `Time: ${formatElapsed(Date.now() - since)}`;
    node.textContent = text;
    node.dataset.elapsed = String(Math.floor((Date.now() - since) / 1000));
  };
  tick();
  call.elapsedTimer = setInterval(tick, 1000);
  call.timers.push(call.elapsedTimer);
}

// --- posture ---------------------------------------------------------------------------

function onPosture(posture) {
  if (!posture) return;
  app.posture = posture;
  showLaptopState();
  showPosture();
  if (!posture.compliant) {
    // The hub suspends us next (or already has); say why now.
    setSuspended('posture');
    announce('This laptop failed its security check. The call is paused until it passes.', 'warning');
  } else if (call.status === 'admitted') {
    setSuspended(null);
  } else if (call.status === 'suspended') {
    $('call-suspended-body').textContent = 'This laptop passes its security check again. The call carries on in a moment.';
  }
}

function onSuspended(reason) {
  const state = call;
  state.status = 'suspended';
  state.suspendedReason = reason || 'posture_refused';
  syncPeers();   // the others hang up with a suspended participant, and so do we
  setSuspended(reason === 'device_revoked' ? 'revoked' : 'posture');
  setPhase('paused');
  renderSide();
  announce('The call is paused because this laptop failed its security check.', 'warning');
}

function onReinstated(participants) {
  const state = call;
  state.status = 'admitted';
  for (const p of participants) if (p.id !== state.me) state.participants.set(p.id, p);
  setSuspended(null);
  setPhase(state.consultationState === 'live' ? 'live' : 'open');
  syncPeers({ recover: true });
  refreshWaiting();
  renderSide();
  announce('This laptop passed its security check again. The call carries on.');
}

/** The "call is paused" box: why, and the fixes from the failed rules. */
function setSuspended(kind) {
  const box = $('call-suspended');
  const fixes = $('call-suspended-fixes');
  clear(fixes);
  if (!kind) {
    box.hidden = true;
    delete box.dataset.reason;
    return;
  }
  box.dataset.reason = kind;
  $('call-suspended-title').textContent = 'The call is paused';
  if (kind === 'revoked') {
    $('call-suspended-body').textContent = 'This laptop is no longer allowed to hold consultations. Nobody can see or hear you, and the patient’s records are closed. Call the IT service desk.';
  } else {
    $('call-suspended-body').textContent = 'This laptop failed its regular security check, so nobody can see or hear you and the patient’s records are hidden. The call carries on by itself when the laptop passes again.';
  }
  const rules = app.posture && Array.isArray(app.posture.rules) ? app.posture.rules : [];
  for (const rule of rules.filter((r) => r.outcome === 'fail' || r.outcome === 'unknown')) {
    fixes.append(h('li', { dataset: { ruleId: rule.id } },
      h('strong', {}, `${rule.title || rule.id}: `), rule.remediation || 'This check did not pass.'));
  }
  $('call-check-again').hidden = kind === 'revoked';
  box.hidden = false;
}

async function checkAgain() {
  const button = $('call-check-again');
  button.disabled = true;
  $('call-suspended-body').textContent = 'Checking this laptop…';
  try {
    const posture = await api(paths.deviceCheck, { method: 'POST' });
    if (call) onPosture(posture);
  } catch (_) {
    $('call-suspended-body').textContent = 'The check did not finish. Check that the laptop’s mobile connection is on, then try again.';
  } finally {
    button.disabled = false;
  }
}

// --- quality ---------------------------------------------------------------------------

function startStats() {
  if (!call || call.statsTimer) return;
  call.statsTimer = setInterval(sampleQuality, STATS_EVERY_MS);
  call.timers.push(call.statsTimer);
}

function stopStats() {
  if (!call || !call.statsTimer) return;
  clearInterval(call.statsTimer);
  call.statsTimer = null;
  $('quality').hidden = true;
}

async function sampleQuality() {
  const state = call;
  if (!state) return;
  const order = { good: 0, poor: 1, bad: 2 };
  let worst = null;
  let worstPeer = null;
  for (const peer of state.peers.values()) {
    let q = null;
    try {
      q = await peer.updateQuality();
    } catch (_) {
      q = null;
    }
    if (q && (!worst || order[q.level] > order[worst.level])) {
      worst = q;
      worstPeer = peer;
    }
  }
  if (call !== state) return;
  const box = $('quality');
  if (!worst) {
    box.hidden = true;
    return;
  }
  box.hidden = false;
  box.dataset.level = worst.level;
  $('quality-text').textContent = `Connection with ${describeParticipant(worstPeer.view)}: ${worst.text}`;
  state.poorSamples = worst.level === 'good' ? 0 : state.poorSamples + 1;
  if (worst.level === 'good') state.promptDismissed = false;
  if (state.poorSamples === PROMPT_AFTER_SAMPLES) {
    announce(`The connection with ${describeParticipant(worstPeer.view)} is ${worst.level}. The picture or sound may break up.`, 'warning');
  }
  const prompt = $('quality-prompt');
  const showPrompt = state.poorSamples >= PROMPT_AFTER_SAMPLES && !state.audioOnly && !state.promptDismissed;
  if (prompt.hidden === showPrompt) prompt.hidden = !showPrompt;
}

// --- the end ---------------------------------------------------------------------------

/** Stop everything this screen runs: peers, socket, camera, timers, records. */
function hangUp() {
  const state = call;
  if (!state) return;
  call = null;
  state.finished = true;
  for (const timer of state.timers) {
    clearInterval(timer);
    clearTimeout(timer);
  }
  for (const peer of state.peers.values()) peer.close();
  state.peers.clear();
  if (state.socket) {
    const ws = state.socket;
    state.socket = null;
    ws.onclose = null;
    ws.onmessage = null;
    try {
      ws.close(1000);
    } catch (_) { /* closed already */ }
  }
  stopCamera(state);
  closeRecords();
  clear($('side-prepare'));
  clear($('remote-grid'));
  resetWaiting();
  setSuspended(null);
  document.body.classList.remove('audio-only');
  delete document.body.dataset.callPhase;
  if (document.fullscreenElement) document.exitFullscreen().catch(() => {});
}

function finish(kind, hint) {
  const state = call;
  if (!state) return;
  const c = state.c;
  if (kind === 'ended') {
    updateConsultation(c.id, { state: 'ended' });
    try {
      sessionStorage.removeItem(`telemed.console.live.${c.id}`);
    } catch (_) { /* nothing stored */ }
  }
  dismissDialog();
  hangUp();
  showMessage(kind, { hint, onAction: () => go('schedule') });
  if (kind === 'ended') announce('The consultation has ended.');
}

export function bindCall() {
  $('call-mic').addEventListener('click', toggleMic);
  $('call-camera').addEventListener('click', toggleCamera);
  $('call-audio-only').addEventListener('click', () => setAudioOnly(!(call && call.audioOnly)));
  $('quality-audio-only').addEventListener('click', () => {
    setAudioOnly(true);
    $('call-audio-only').focus();
  });
  $('quality-dismiss').addEventListener('click', () => {
    if (call) call.promptDismissed = true;
    $('quality-prompt').hidden = true;
    $('call-audio-only').focus();
  });
  $('call-fullscreen').addEventListener('click', toggleFullscreen);
  document.addEventListener('fullscreenchange', updateControls);
  $('call-end').addEventListener('click', endConsultation);
  $('call-check-again').addEventListener('click', checkAgain);
  route('call', open);
}

/** Whether a call is open (the invite list and the posture handler use it). */
export function inCall() {
  return Boolean(call);
}

