/*
 * The remote specialist's page: invite check -> set-up check (camera, microphone, speaker) ->
 * Join: invite redeemed for a join token -> signalling socket -> waiting room -> admitted ->
 * WebRTC with the others. Plain JavaScript, no dependencies, no build step.
 *
 * Protocol: docs/protocol.md (signalling, version 1). Flow and states: docs/web.md.
 *
 * Security notes
 *  - The invite token arrives in the URL fragment, which browsers never send to a server.
 *    It is removed from the address bar (history.replaceState) as soon as it is read. It is
 *    checked (POST /api/v1/invites/check, which does not use it up) when the page opens, and
 *    spent once (POST /api/v1/invites/redeem) only when the specialist presses Join inside
 *    the joining window — so opening the link early, or closing the tab, does not spend it.
 *  - The join token and the resume token live in sessionStorage (this tab only), so that
 *    reloading the page does not need the single-use invite again.
 *  - localStorage (kept by this browser) holds only the chosen camera, microphone and
 *    speaker ids, never anything about the consultation, the patient or the link.
 *  - No string is ever parsed as HTML (the page's CSP enforces Trusted Types): text
 *    from the server (display names) only ever goes through textContent.
 *  - The speaker test is a tone made here with WebAudio: nothing is loaded from anywhere.
 */
(() => {
  'use strict';

  const PROTOCOL_VERSION = 1;
  const STORAGE_KEY = 'telemed.join.v1';
  const PENDING_KEY = 'telemed.invite.v1';
  const DEVICES_KEY = 'telemed.devices.v1';
  const SIGNALLING_PATH = '/ws/v1/signalling';
  const CHECK_PATH = '/api/v1/invites/check';
  const REDEEM_PATH = '/api/v1/invites/redeem';
  const PING_EVERY_MS = 15000;
  const SILENT_SOCKET_MS = 40000;       // no frame at all for this long: the socket is dead
  const STATS_EVERY_MS = 2000;
  const CONNECT_TIMEOUT_MS = 15000;     // no working media by then: negotiate a fresh connection
  const RECOVER_IMPOLITE_MS = 2000;     // as clinic_client's RecoveryPolicy: restart_after_s
  const RECOVER_POLITE_EXTRA_MS = 3000; // ... plus polite_extra_s for the answering side
  const MAX_RECOVER_DELAY_MS = 30000;
  const FIRST_CONNECT_ATTEMPTS = 4;     // then "server unreachable"
  const MAX_RECONNECT_MS = 120000;      // then "connection lost", with a button to try again
  const OPEN_SLACK_MS = 1000;           // check again this long after the window should have opened
  const DEVICE_KINDS = ['videoinput', 'audioinput', 'audiooutput'];

  // --- the page ------------------------------------------------------------------------

  const $ = (id) => document.getElementById(id);
  const el = {
    status: $('status'),
    loadingText: $('loading-text'),
    room: document.querySelector('section[data-screen="room"]'),
    prejoinTitle: $('prejoin-title'),
    prejoinLead: $('prejoin-lead'),
    prejoinNote: $('prejoin-note'),
    prejoinExpiry: $('prejoin-expiry'),
    checkButton: $('check-button'),
    joinButton: $('join-button'),
    roomTitle: $('room-title'),
    callTitle: $('call-title'),
    elapsed: $('elapsed'),
    waitingLead: $('waiting-lead'),
    waitingNote: $('waiting-note'),
    hostPresence: $('host-presence'),
    detailName: $('detail-name'),
    detailHost: $('detail-host'),
    detailTime: $('detail-time'),
    grid: $('remote-grid'),
    selfVideo: $('self-video'),
    selfName: $('self-name'),
    selfState: $('self-state'),
    micMeter: $('mic-meter'),
    panelMeter: $('panel-meter'),
    devicePanel: $('device-panel'),
    deviceHome: $('device-home'),
    deviceDialog: $('device-dialog'),
    deviceDialogBody: $('device-dialog-body'),
    deviceDialogDone: $('device-dialog-done'),
    selects: {
      videoinput: $('camera-select'),
      audioinput: $('mic-select'),
      audiooutput: $('speaker-select'),
    },
    speakerField: $('speaker-field'),
    speakerFallback: $('speaker-fallback'),
    speakerTest: $('speaker-test'),
    testSound: $('test-sound'),
    mic: $('mic-button'),
    camera: $('camera-button'),
    devices: $('devices-button'),
    leave: $('leave-button'),
    leaveDialog: $('leave-dialog'),
    leaveStay: $('leave-stay'),
    leaveConfirm: $('leave-confirm'),
    messageTitle: $('message-title'),
    messageBody: $('message-body'),
    messageHint: $('message-hint'),
    messageAction: $('message-action'),
    helpInviter: $('help-inviter'),
    helpContact: $('help-contact'),
    helpContactText: $('help-contact-text'),
    helpPhone: $('help-phone'),
    helpFallback: $('help-fallback'),
  };

  /** Everything a user can be told when something stops them, in plain words. */
  const MESSAGES = {
    invalid_link: {
      tone: 'error',
      title: 'This link does not work',
      body: 'The invite link is not complete or not valid.',
      hint: 'Please open the link again from the email or message you were sent, or ask the clinician for a new link.',
    },
    invite_used: {
      tone: 'error',
      title: 'This invite link has already been used',
      body: 'Each invite link can only be used once.',
      hint: 'If the consultation is open in another window or tab, please go back to it. Otherwise ask the clinician to send you a new link.',
    },
    invite_expired: {
      tone: 'error',
      title: 'This invite link has expired',
      body: 'The link is too old to use now.',
      hint: 'Please ask the clinician to send you a new link.',
    },
    consultation_over: {
      tone: 'info',
      title: 'This consultation is not taking place',
      body: 'The consultation has already ended or has been cancelled.',
      hint: 'If you think this is wrong, please contact the clinician who invited you.',
    },
    access_expired: {
      tone: 'error',
      title: 'Your access has expired',
      body: 'The time allowed for joining this consultation has passed.',
      hint: 'Please ask the clinician for a new invite link.',
    },
    denied: {
      tone: 'info',
      title: 'The clinician did not let you in',
      body: 'You have not been admitted to this consultation.',
      hint: 'If you think this is a mistake, please contact the clinician who invited you.',
    },
    forbidden: {
      tone: 'error',
      title: 'You cannot join this consultation',
      body: 'The service did not allow this connection.',
      hint: 'Please ask the clinician who invited you for help.',
    },
    camera_refused: {
      tone: 'error',
      title: 'Your camera and microphone are blocked',
      body: 'The clinician needs to see and hear you, but this browser is not allowed to use your camera and microphone.',
      hint: 'Click the camera or lock symbol at the left of the address bar, choose Allow for camera and microphone, then press Try again.',
      action: 'Try again',
    },
    camera_missing: {
      tone: 'error',
      title: 'No camera or microphone found',
      body: 'This computer does not seem to have a camera and microphone we can use.',
      hint: 'Plug in a camera and microphone (or a headset), then press Try again.',
      action: 'Try again',
    },
    camera_busy: {
      tone: 'error',
      title: 'Your camera is being used by another program',
      body: 'Another program or browser tab is using your camera or microphone.',
      hint: 'Close other video call programs (for example Teams or Zoom), then press Try again.',
      action: 'Try again',
    },
    insecure: {
      tone: 'error',
      title: 'This page cannot use your camera',
      body: 'The page was not opened over a secure connection, or this browser is too old for video calls.',
      hint: 'Please open the link in an up-to-date Chrome, Edge, Firefox or Safari. If that does not help, contact the clinician.',
    },
    unreachable: {
      tone: 'error',
      title: 'We cannot reach the consultation service',
      body: 'Your computer could not connect to the service.',
      hint: 'Check that you are connected to the internet, then press Try again. Some hospital networks block video calls; your IT department can help.',
      action: 'Try again',
    },
    server_error: {
      tone: 'error',
      title: 'Something went wrong',
      body: 'The consultation service had a problem.',
      hint: 'Please wait a moment, then press Try again.',
      action: 'Try again',
    },
    connection_lost: {
      tone: 'error',
      title: 'The connection was lost',
      body: 'We could not reconnect you to the consultation.',
      hint: 'Check your internet connection, then press Try again.',
      action: 'Try again',
    },
    replaced: {
      tone: 'info',
      title: 'The consultation is open somewhere else',
      body: 'You joined this consultation from another window, tab or device, so this page has stopped.',
      hint: 'You can close this page.',
    },
    ended: {
      tone: 'info',
      title: 'The consultation has ended',
      body: 'Thank you for taking part.',
      hint: 'You can now close this page.',
    },
    left: {
      tone: 'info',
      title: 'You have left the consultation',
      body: 'Your camera and microphone are now off.',
      hint: 'If you left by mistake, press Rejoin. The clinician will need to let you in again.',
      action: 'Rejoin',
    },
  };

  // --- state ---------------------------------------------------------------------------

  const state = {
    invite: null,          // the unspent invite token, until it is redeemed
    check: null,           // InviteCheckOut from the invite check
    inviter: null,         // {name, establishment} of whoever sent the invite, if known
    ticket: null,          // JoinTicketOut from the redeem call
    me: null,              // our participant id (from welcome)
    resumeToken: null,
    resumeGraceMs: 60000,
    iceServers: [],
    icePolicy: 'all',
    status: null,          // "waiting" | "admitted" | "suspended" once welcomed
    localStream: null,
    socket: null,
    socketTimers: [],
    lastFrameAt: 0,
    everWelcomed: false,
    firstAttempts: 0,
    reconnectSince: null,
    reconnectAttempt: 0,
    reconnectTimer: null,
    denied: false,
    denyReason: null,
    replaced: false,
    finished: false,       // a final screen is showing: ignore late events
    participants: new Map(),  // id -> ParticipantView
    peers: new Map(),         // id -> Peer
    statsTimer: null,
    micOn: true,
    cameraOn: true,
    meter: null,           // the microphone level meter: {context, timer}
    speaker: '',           // the chosen audio output's id ('' = the system default)
    testTone: null,        // the speaker test playing now: {context, done}
    openTimer: null,       // the early screen's wait for the joining window
    admittedAt: null,      // when this tab was first let in (ms), for the elapsed time
    elapsedTimer: null,
  };

  let pendingInviteToken = null;  // an invite not yet redeemed (in memory if storage is refused)

  // --- screens -------------------------------------------------------------------------

  const ROOM_HEADINGS = { early: 'prejoin-title', setup: 'prejoin-title', waiting: 'room-title', call: 'call-title' };

  /** Show one screen (for the room section: one mode of it) and move focus to its heading. */
  function show(screen, mode, { keepFocus = false } = {}) {
    for (const section of document.querySelectorAll('main > section[data-screen]')) {
      section.hidden = section.dataset.screen !== screen;
    }
    document.body.dataset.screen = mode || screen;
    let heading;
    if (screen === 'room') {
      el.room.dataset.mode = mode;
      el.room.setAttribute('aria-labelledby', ROOM_HEADINGS[mode]);
      heading = $(ROOM_HEADINGS[mode]);
      placeDevicePanel(mode === 'early' || mode === 'setup' ? 'page' : 'dialog');
    } else {
      heading = document.querySelector(`section[data-screen="${screen}"] h1`);
    }
    // Move focus so screen readers read the new screen and keyboard users start at its top.
    if (heading && !keepFocus) heading.focus({ preventScroll: false });
  }

  function announce(text, tone) {
    el.status.textContent = text || '';
    el.status.classList.toggle('warning', tone === 'warning');
  }

  function showMessage(kind, extra) {
    const m = MESSAGES[kind] || MESSAGES.server_error;
    state.finished = true;
    clearTimeout(state.openTimer);
    state.openTimer = null;
    stopElapsed();
    closeDialogs();
    leaveFullscreen();
    // Every message screen stops the camera and microphone (the set-up check's too).
    stopCamera();
    document.body.dataset.message = kind;
    document.body.dataset.tone = m.tone;
    el.messageTitle.textContent = m.title;
    el.messageBody.textContent = m.body;
    el.messageHint.textContent = (extra && extra.hint) || m.hint;
    if (m.action) {
      el.messageAction.textContent = m.action;
      el.messageAction.hidden = false;
    } else {
      el.messageAction.hidden = true;
    }
    showHelp();
    announce('');
    show('message');
    document.title = `${m.title} – Video consultation`;
  }

  /** The configured help contact (TELEMED_SUPPORT_CONTACT / _PHONE), from the page's meta elements. */
  function supportContact() {
    const read = (name) => {
      const meta = document.querySelector(`meta[name="${name}"]`);
      return meta ? meta.content.trim() : '';
    };
    return { contact: read('telemed-support-contact'), phone: read('telemed-support-phone') };
  }

  /** Who can help on a message screen: who sent the invite, and the deployment's help contact. */
  function showHelp() {
    const inviter = state.inviter;
    if (inviter && inviter.name) {
      el.helpInviter.textContent = inviter.establishment
        ? `You were invited by ${inviter.name}, ${inviter.establishment}.`
        : `You were invited by ${inviter.name}.`;
      el.helpInviter.hidden = false;
    } else {
      el.helpInviter.hidden = true;
    }
    const { contact, phone } = supportContact();
    el.helpContactText.textContent = contact ? `For help, contact: ${contact}` : (phone ? 'For help, call:' : '');
    if (phone) {
      el.helpPhone.textContent = phone;
      el.helpPhone.href = `tel:${phone.replace(/[^0-9+]/g, '')}`;
      el.helpPhone.hidden = false;
    } else {
      el.helpPhone.hidden = true;
      el.helpPhone.removeAttribute('href');
    }
    el.helpContact.hidden = !contact && !phone;
    el.helpFallback.hidden = !el.helpInviter.hidden || !el.helpContact.hidden;
  }

  function formatTime(iso) {
    const when = new Date(iso);
    if (Number.isNaN(when.getTime())) return '';
    return when.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  }

  /** "14:30" today, "Monday 30 November at 14:30" on another day. */
  function formatWhen(iso) {
    const when = new Date(iso);
    if (Number.isNaN(when.getTime())) return '';
    const today = new Date();
    if (when.toDateString() === today.toDateString()) return formatTime(iso);
    return `${formatDay(iso)} at ${formatTime(iso)}`;
  }

  /** "today at 14:30", or "on Monday 30 November at 14:30". */
  function formatOn(iso) {
    const when = new Date(iso);
    if (Number.isNaN(when.getTime())) return '';
    if (when.toDateString() === new Date().toDateString()) return `today at ${formatTime(iso)}`;
    return `on ${formatDay(iso)} at ${formatTime(iso)}`;
  }

  function formatDay(iso) {
    const when = new Date(iso);
    if (Number.isNaN(when.getTime())) return '';
    return when.toLocaleDateString([], { weekday: 'long', day: 'numeric', month: 'long' });
  }

  /** 75 -> "1:15", 3725 -> "1:02:05". */
  function formatDuration(seconds) {
    const h = Math.floor(seconds / 3600);
    const m = Math.floor((seconds % 3600) / 60);
    const s = seconds % 60;
    const two = (n) => String(n).padStart(2, '0');
    return h > 0 ? `${h}:${two(m)}:${two(s)}` : `${m}:${two(s)}`;
  }

  // --- the invite and the join token ---------------------------------------------------

  class PageError extends Error {
    constructor(kind) {
      super(kind);
      this.kind = kind;
    }
  }

  /** The invite token from the fragment, removed from the address bar at once. */
  function takeFragmentToken() {
    const raw = window.location.hash.replace(/^#/, '');
    if (window.location.href.includes('#')) {
      history.replaceState(null, '', window.location.pathname + window.location.search);
    }
    if (!raw) return null;
    let token;
    try {
      token = decodeURIComponent(raw).trim();
    } catch (_) {
      return '';
    }
    return token;
  }

  function loadStored() {
    try {
      const stored = JSON.parse(sessionStorage.getItem(STORAGE_KEY) || 'null');
      if (!stored || !stored.ticket || typeof stored.ticket.token !== 'string') return null;
      if (Date.parse(stored.ticket.expires_at) <= Date.now()) return null;
      return stored;
    } catch (_) {
      return null;
    }
  }

  function saveStored() {
    try {
      if (!state.ticket) {
        sessionStorage.removeItem(STORAGE_KEY);
        return;
      }
      sessionStorage.setItem(STORAGE_KEY, JSON.stringify({
        ticket: state.ticket,
        resume: state.resumeToken,
        inviter: state.inviter,
        admitted_at: state.admittedAt,
      }));
    } catch (_) {
      // Private windows may refuse storage; the page still works, only a reload will not.
    }
  }

  function forgetStored() {
    try {
      sessionStorage.removeItem(STORAGE_KEY);
    } catch (_) { /* nothing stored */ }
  }

  function pendingInvite() {
    try {
      return sessionStorage.getItem(PENDING_KEY) || pendingInviteToken;
    } catch (_) {
      return pendingInviteToken;
    }
  }

  function keepPendingInvite(token) {
    pendingInviteToken = token;
    try {
      if (token) sessionStorage.setItem(PENDING_KEY, token);
      else sessionStorage.removeItem(PENDING_KEY);
    } catch (_) { /* kept in memory only */ }
  }

  /** POST the invite to check or redeem it; a refusal becomes a PageError (and names the inviter). */
  async function postInvite(path, inviteToken) {
    let response;
    try {
      response = await fetch(path, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
        body: JSON.stringify({ token: inviteToken }),
        credentials: 'omit',
        cache: 'no-store',
        referrerPolicy: 'no-referrer',
      });
    } catch (_) {
      throw new PageError('unreachable');
    }
    let body = null;
    try {
      body = await response.json();
    } catch (_) {
      body = null;
    }
    if (body && body.invited_by && typeof body.invited_by.name === 'string') {
      state.inviter = { name: body.invited_by.name, establishment: body.invited_by.establishment || null };
    }
    if (response.ok && body) return body;
    const code = body && typeof body.code === 'string' ? body.code : '';
    if (code === 'invite_used') throw new PageError('invite_used');
    if (code === 'invite_expired') throw new PageError('invite_expired');
    if (code === 'invite_invalid' || code === 'validation_error') throw new PageError('invalid_link');
    if (code === 'join_window_closed' || code === 'invalid_state') throw new PageError('consultation_over');
    if (response.status === 502 || response.status === 503 || response.status === 504) {
      throw new PageError('unreachable');
    }
    throw new PageError('server_error');
  }

  /** Who, with whom and when: from the join ticket, or before joining from the invite check. */
  function fillDetails() {
    const source = state.ticket || state.check;
    if (!source) return;
    el.detailName.textContent = source.name || '';
    el.selfName.textContent = source.name ? `You (${source.name})` : 'You';
    const c = source.consultation || {};
    el.detailHost.textContent = c.host_name || '';
    el.detailTime.textContent = c.scheduled_start
      ? `${formatDay(c.scheduled_start)}, ${formatTime(c.scheduled_start)} to ${formatTime(c.scheduled_end)}`
      : '';
  }

  // --- before joining: the set-up check ------------------------------------------------

  /** Before the joining window: when the consultation is, and a set-up check on request. */
  function enterEarly() {
    const c = state.check.consultation;
    el.prejoinTitle.textContent = `Your consultation is ${formatOn(c.scheduled_start)}`;
    el.prejoinLead.textContent = `You can join from ${formatWhen(state.check.opens_at)}. `
      + 'You can check your camera, microphone and speaker now.';
    el.prejoinNote.textContent = 'This link has not been used yet: you can close this page and open the '
      + 'link again when it is time.';
    const expires = Date.parse(state.check.expires_at);
    if (expires <= Date.parse(state.check.opens_at)) {
      el.prejoinExpiry.textContent = `This link stops working at ${formatWhen(state.check.expires_at)}, `
        + 'before you can join. Please ask the clinician for a new link.';
      el.prejoinExpiry.hidden = false;
    } else {
      el.prejoinExpiry.hidden = true;
    }
    el.room.dataset.checking = state.localStream ? 'true' : 'false';
    updateCheckButton();
    document.title = 'Before your consultation – Video consultation';
    show('room', 'early');
    waitForWindow();
  }

  /** Within the joining window: check camera, microphone and speaker, then Join. */
  async function enterSetup({ opened = false } = {}) {
    const c = state.check.consultation;
    el.prejoinTitle.textContent = 'Check your camera, microphone and speaker';
    const starts = Date.parse(c.scheduled_start);
    el.prejoinLead.textContent = starts > Date.now()
      ? `Your consultation starts at ${formatTime(c.scheduled_start)}.`
      : `Your consultation started at ${formatTime(c.scheduled_start)}.`;
    el.prejoinNote.textContent = 'When you are ready, press Join. The clinician will then let you in.';
    el.prejoinExpiry.hidden = true;
    // When the window opens while someone is choosing a device, leave their focus alone.
    const focused = document.activeElement;
    const focusInside = opened && el.room.contains(focused)
      && focused !== el.prejoinTitle && focused !== el.checkButton;
    if (!state.localStream) await openCamera();
    el.room.dataset.checking = 'true';
    document.title = 'Check your camera – Video consultation';
    show('room', 'setup', { keepFocus: focusInside });
    if (opened) announce('You can join the consultation now.');
    await refreshDevices();
  }

  /** Wait, on the early screen, until the joining window opens (by the server's clock), then check again. */
  function waitForWindow() {
    clearTimeout(state.openTimer);
    const until = Date.now() + state.check.opens_in_s * 1000 + OPEN_SLACK_MS;
    // Short naps rather than one long timer: timers drift while a computer sleeps.
    const nap = () => {
      const left = until - Date.now();
      if (left > 0) {
        state.openTimer = setTimeout(nap, Math.min(left, 30000));
        return;
      }
      state.openTimer = null;
      recheck().catch((err) => {
        console.error('invite check failed', err);
        showMessage('server_error');
      });
    };
    nap();
  }

  /** Check the invite again when the window should be open (it may have been cancelled meanwhile). */
  async function recheck() {
    try {
      state.check = await postInvite(CHECK_PATH, state.invite);
    } catch (err) {
      const kind = err instanceof PageError ? err.kind : 'server_error';
      if (kind === 'unreachable' || kind === 'server_error') {
        // Stay on the early screen and try again shortly: the specialist may be away from the desk.
        state.openTimer = setTimeout(() => recheck().catch(() => {}), 30000);
        return;
      }
      keepPendingInvite(null);
      showMessage(kind);
      return;
    }
    fillDetails();
    if (state.check.status === 'open') {
      try {
        await enterSetup({ opened: true });
      } catch (err) {
        showMessage(err instanceof PageError ? err.kind : 'server_error');
      }
    } else {
      waitForWindow();
    }
  }

  function updateCheckButton() {
    const checking = Boolean(state.localStream);
    el.checkButton.textContent = checking ? 'Stop the check' : 'Check my camera and sound';
    el.room.dataset.checking = checking ? 'true' : 'false';
  }

  /** Early screen: start or stop the set-up check (the camera is not left on for hours). */
  async function toggleCheck() {
    if (state.localStream) {
      stopCamera();
      updateCheckButton();
      announce('The check has stopped. Your camera and microphone are off.');
      return;
    }
    try {
      await openCamera({ promptScreen: false });
    } catch (err) {
      showMessage(err instanceof PageError ? err.kind : 'server_error');
      return;
    }
    updateCheckButton();
    await refreshDevices();
    announce('Your camera and microphone are on. Check the picture and the level below.');
  }

  /** Join: redeem the invite now (single use) and go on to the waiting room. */
  async function joinNow() {
    el.joinButton.disabled = true;
    el.loadingText.textContent = 'Joining the consultation…';
    show('loading');
    try {
      state.ticket = await postInvite(REDEEM_PATH, state.invite);
    } catch (err) {
      const kind = err instanceof PageError ? err.kind : 'server_error';
      if (kind !== 'unreachable' && kind !== 'server_error') keepPendingInvite(null);
      showMessage(kind);
      return;
    } finally {
      el.joinButton.disabled = false;
    }
    keepPendingInvite(null);
    state.invite = null;
    state.resumeToken = null;
    state.admittedAt = null;
    saveStored();
    fillDetails();
    await join();
  }

  // --- camera and microphone -----------------------------------------------------------

  /** The devices this browser chose last time (ids only), or nothing. */
  function savedDevices() {
    try {
      const saved = JSON.parse(localStorage.getItem(DEVICES_KEY) || '{}');
      const out = {};
      for (const kind of DEVICE_KINDS) {
        const id = saved && saved[kind];
        if (typeof id === 'string' && id.length > 0 && id.length <= 256) out[kind] = id;
      }
      return out;
    } catch (_) {
      return {};
    }
  }

  function saveDevice(kind, id) {
    try {
      const saved = savedDevices();
      if (id) saved[kind] = id;
      else delete saved[kind];
      localStorage.setItem(DEVICES_KEY, JSON.stringify(saved));
    } catch (_) { /* storage refused: the choice lasts for this page only */ }
  }

  const AUDIO_PROCESSING = { echoCancellation: true, noiseSuppression: true, autoGainControl: true };
  const VIDEO_SIZE = { width: { ideal: 1280 }, height: { ideal: 720 } };

  function mediaConstraints(saved) {
    const audio = { ...AUDIO_PROCESSING };
    const video = { ...VIDEO_SIZE };
    if (saved.audioinput) audio.deviceId = { exact: saved.audioinput };
    if (saved.videoinput) video.deviceId = { exact: saved.videoinput };
    else video.facingMode = 'user';
    return { audio, video };
  }

  /** The remembered camera and microphone; if they are not plugged in today, the system's own. */
  async function getCameraAndMicrophone() {
    const saved = savedDevices();
    try {
      return await navigator.mediaDevices.getUserMedia(mediaConstraints(saved));
    } catch (err) {
      const gone = err && ['OverconstrainedError', 'NotFoundError', 'NotReadableError'].includes(err.name);
      if (!gone || (!saved.audioinput && !saved.videoinput)) throw err;
      return navigator.mediaDevices.getUserMedia(mediaConstraints({}));
    }
  }

  function mediaError(err) {
    const name = err && err.name;
    if (name === 'NotAllowedError' || name === 'SecurityError' || name === 'PermissionDeniedError') {
      return new PageError('camera_refused');
    }
    if (name === 'NotFoundError' || name === 'OverconstrainedError' || name === 'DevicesNotFoundError') {
      return new PageError('camera_missing');
    }
    if (name === 'NotReadableError' || name === 'AbortError' || name === 'TrackStartError') {
      return new PageError('camera_busy');
    }
    return new PageError('camera_refused');
  }

  async function openCamera({ promptScreen = true } = {}) {
    if (state.localStream && state.localStream.getTracks().every((t) => t.readyState === 'live')) return;
    if (!window.isSecureContext || !navigator.mediaDevices || !navigator.mediaDevices.getUserMedia
        || typeof RTCPeerConnection !== 'function') {
      throw new PageError('insecure');
    }
    // Only show "allow your camera" if the browser is actually asking.
    const prompt = promptScreen ? setTimeout(() => show('camera'), 400) : null;
    try {
      state.localStream = await getCameraAndMicrophone();
    } catch (err) {
      throw mediaError(err);
    } finally {
      clearTimeout(prompt);
    }
    for (const track of state.localStream.getAudioTracks()) track.enabled = state.micOn;
    for (const track of state.localStream.getVideoTracks()) track.enabled = state.cameraOn;
    for (const track of state.localStream.getTracks()) watchTrack(track);
    const saved = savedDevices();
    state.speaker = saved.audiooutput && saved.audiooutput !== 'default' ? saved.audiooutput : '';
    el.selfVideo.srcObject = state.localStream;
    el.selfVideo.play().catch(() => { /* muted self-view: autoplay is allowed */ });
    startMicMeter();
  }

  /** A level meter under the self-view, so people can see that their microphone hears them. */
  function startMicMeter() {
    stopMicMeter();
    const AudioCtx = window.AudioContext || window.webkitAudioContext;
    if (!AudioCtx || !state.localStream || state.localStream.getAudioTracks().length === 0) return;
    const context = new AudioCtx();
    const analyser = context.createAnalyser();
    analyser.fftSize = 1024;
    context.createMediaStreamSource(state.localStream).connect(analyser);
    const samples = new Float32Array(analyser.fftSize);
    const timer = setInterval(() => {
      analyser.getFloatTimeDomainData(samples);
      let sum = 0;
      for (const x of samples) sum += x * x;
      const rms = Math.sqrt(sum / samples.length);
      const level = state.micOn ? Math.min(1, rms * 5) : 0;
      el.micMeter.value = level;
      el.panelMeter.value = level;
    }, 100);
    state.meter = { context, timer };
    if (context.state === 'suspended') {
      // Some browsers start audio only after a click or key press.
      const resume = () => context.resume().catch(() => {});
      document.addEventListener('pointerdown', resume, { once: true });
      document.addEventListener('keydown', resume, { once: true });
    }
  }

  function stopMicMeter() {
    if (!state.meter) return;
    clearInterval(state.meter.timer);
    state.meter.context.close().catch(() => {});
    state.meter = null;
    el.micMeter.value = 0;
    el.panelMeter.value = 0;
  }

  function stopCamera() {
    stopMicMeter();
    stopTestSound();
    if (state.localStream) {
      for (const track of state.localStream.getTracks()) {
        track.onended = null;
        track.stop();
      }
    }
    state.localStream = null;
    el.selfVideo.srcObject = null;
  }

  function updateControls() {
    el.mic.textContent = state.micOn ? 'Mute microphone' : 'Unmute microphone';
    el.mic.classList.toggle('off', !state.micOn);
    el.camera.textContent = state.cameraOn ? 'Turn camera off' : 'Turn camera on';
    el.camera.classList.toggle('off', !state.cameraOn);
    const notes = [];
    if (!state.micOn) notes.push('Microphone off');
    if (!state.cameraOn) notes.push('Camera off');
    el.selfState.textContent = notes.join(' · ');
  }

  function toggleMic() {
    state.micOn = !state.micOn;
    if (state.localStream) for (const t of state.localStream.getAudioTracks()) t.enabled = state.micOn;
    updateControls();
    announce(state.micOn ? 'Your microphone is on.' : 'Your microphone is muted. Others cannot hear you.');
  }

  function toggleCamera() {
    state.cameraOn = !state.cameraOn;
    // A disabled track sends black frames: no renegotiation, and the others keep the connection.
    if (state.localStream) for (const t of state.localStream.getVideoTracks()) t.enabled = state.cameraOn;
    updateControls();
    announce(state.cameraOn ? 'Your camera is on.' : 'Your camera is off. Others cannot see you.');
  }

  // --- choosing the camera, microphone and speaker -------------------------------------

  const KIND_WORDS = { videoinput: 'Camera', audioinput: 'Microphone', audiooutput: 'Speaker' };

  function speakerChoiceSupported() {
    return typeof HTMLMediaElement !== 'undefined' && 'setSinkId' in HTMLMediaElement.prototype;
  }

  function currentDeviceId(kind) {
    if (kind === 'audiooutput') return state.speaker;
    const track = trackOf(kind === 'videoinput' ? 'video' : 'audio');
    return track ? (track.getSettings().deviceId || '') : '';
  }

  function trackOf(mediaKind) {
    if (!state.localStream) return null;
    return state.localStream.getTracks().find((t) => t.kind === mediaKind) || null;
  }

  /** Fill the three lists from enumerateDevices (labels are known once the camera is allowed). */
  async function refreshDevices() {
    if (!navigator.mediaDevices || !navigator.mediaDevices.enumerateDevices) return;
    let devices;
    try {
      devices = await navigator.mediaDevices.enumerateDevices();
    } catch (_) {
      return;
    }
    for (const kind of DEVICE_KINDS) {
      const select = el.selects[kind];
      const found = devices.filter((d) => d.kind === kind && d.deviceId);
      const options = found.map((d, i) => {
        const option = document.createElement('option');
        option.value = d.deviceId;
        option.textContent = d.label || `${KIND_WORDS[kind]} ${i + 1}`;
        return option;
      });
      select.replaceChildren(...options);
      let current = currentDeviceId(kind);
      if (kind === 'audiooutput' && !found.some((d) => d.deviceId === current)) {
        // No speaker chosen, or the chosen one is not plugged in today: the system default.
        if (state.speaker) await useSpeaker('');
        current = found.some((d) => d.deviceId === 'default') ? 'default' : (found[0] ? found[0].deviceId : '');
      }
      if (current && found.some((d) => d.deviceId === current)) select.value = current;
      select.disabled = found.length === 0;
    }
    // Where the browser cannot send sound to a chosen speaker, say so in plain words instead.
    const speakers = devices.some((d) => d.kind === 'audiooutput' && d.deviceId);
    const canChoose = speakerChoiceSupported() && speakers;
    el.speakerField.hidden = !canChoose;
    el.speakerFallback.hidden = canChoose;
    el.devicePanel.dataset.speakerChoice = canChoose ? 'yes' : 'no';
  }

  /** Use another device now: on the page, and mid-call on every connection (no renegotiation). */
  async function switchDevice(kind, deviceId) {
    const select = el.selects[kind];
    const label = select.selectedOptions[0] ? select.selectedOptions[0].textContent : KIND_WORDS[kind];
    if (kind === 'audiooutput') {
      await useSpeaker(deviceId);
      saveDevice(kind, deviceId);
      announce(`Sound now plays through ${label}.`);
      return;
    }
    const mediaKind = kind === 'videoinput' ? 'video' : 'audio';
    const old = trackOf(mediaKind);
    if (old && old.getSettings().deviceId === deviceId) return;
    let fresh;
    try {
      const constraints = mediaKind === 'video'
        ? { video: { ...VIDEO_SIZE, deviceId: { exact: deviceId } } }
        : { audio: { ...AUDIO_PROCESSING, deviceId: { exact: deviceId } } };
      fresh = (await navigator.mediaDevices.getUserMedia(constraints)).getTracks()[0];
    } catch (_) {
      select.value = currentDeviceId(kind);
      announce(`${label} could not be started. It may be in use by another program. `
        + `Your ${KIND_WORDS[kind].toLowerCase()} has not changed.`, 'warning');
      return;
    }
    await replaceLocalTrack(old, fresh);
    saveDevice(kind, deviceId);
    announce(`Now using ${label}.`);
  }

  /** Put a new camera or microphone track in place of the old one, for the page and every peer. */
  async function replaceLocalTrack(old, fresh) {
    fresh.enabled = fresh.kind === 'video' ? state.cameraOn : state.micOn;
    watchTrack(fresh);
    if (!state.localStream) state.localStream = new MediaStream();
    // RTCRtpSender.replaceTrack swaps what each connection sends without an offer/answer.
    const swaps = [];
    for (const peer of state.peers.values()) swaps.push(peer.replaceTrack(fresh));
    await Promise.all(swaps);
    if (old) {
      state.localStream.removeTrack(old);
      old.onended = null;
      old.stop();
    }
    state.localStream.addTrack(fresh);
    if (fresh.kind === 'video') {
      el.selfVideo.srcObject = null;
      el.selfVideo.srcObject = state.localStream;
      el.selfVideo.play().catch(() => {});
    } else {
      startMicMeter();
    }
  }

  /** A device unplugged (a headset, a dock): fall back to the system default and say so. */
  function watchTrack(track) {
    track.onended = () => {
      if (state.finished || !state.localStream || !state.localStream.getTracks().includes(track)) return;
      const kind = track.kind === 'video' ? 'videoinput' : 'audioinput';
      const constraints = track.kind === 'video' ? { video: { ...VIDEO_SIZE } } : { audio: { ...AUDIO_PROCESSING } };
      navigator.mediaDevices.getUserMedia(constraints).then(async (stream) => {
        await replaceLocalTrack(track, stream.getTracks()[0]);
        await refreshDevices();
        announce(`Your ${KIND_WORDS[kind].toLowerCase()} was disconnected. Now using ${stream.getTracks()[0].label || 'the default one'}.`, 'warning');
      }).catch(() => {
        announce(`Your ${KIND_WORDS[kind].toLowerCase()} was disconnected. Choose another one in Camera and sound settings.`, 'warning');
      });
    };
  }

  /** Send all sound (the others, the test tone) to this speaker, where the browser can. */
  async function useSpeaker(deviceId) {
    state.speaker = deviceId === 'default' ? '' : deviceId;
    if (!speakerChoiceSupported()) return;
    const elements = [el.testSound, ...[...state.peers.values()].map((p) => p.video)];
    await Promise.all(elements.map((media) => applySpeaker(media)));
  }

  function applySpeaker(media) {
    if (!speakerChoiceSupported() || (media.sinkId || '') === state.speaker) return Promise.resolve();
    return media.setSinkId(state.speaker).catch((err) => console.warn('cannot use that speaker', err && err.name));
  }

  /** Three short beeps made here (WebAudio), played through the chosen speaker. */
  async function playTestSound() {
    const AudioCtx = window.AudioContext || window.webkitAudioContext;
    if (!AudioCtx) {
      announce('This browser cannot play a test sound.', 'warning');
      return;
    }
    stopTestSound();
    const context = new AudioCtx();
    const destination = context.createMediaStreamDestination();
    const gain = context.createGain();
    gain.gain.value = 0;
    gain.connect(destination);
    const tone = context.createOscillator();
    tone.type = 'sine';
    tone.frequency.value = 660;
    tone.connect(gain);
    const t0 = context.currentTime + 0.05;
    for (let i = 0; i < 3; i += 1) {
      const at = t0 + i * 0.5;
      gain.gain.setValueAtTime(0, at);
      gain.gain.linearRampToValueAtTime(0.3, at + 0.02);
      gain.gain.setValueAtTime(0.3, at + 0.3);
      gain.gain.linearRampToValueAtTime(0, at + 0.33);
    }
    const playing = { context, tone };
    state.testTone = playing;
    tone.onended = () => {
      if (state.testTone === playing) stopTestSound();
    };
    el.testSound.srcObject = destination.stream;
    await applySpeaker(el.testSound);
    tone.start(t0);
    tone.stop(t0 + 1.5);
    el.speakerTest.dataset.playing = 'true';
    announce('Playing a test sound: three short beeps. If you cannot hear them, choose another speaker or turn the volume up.');
    await el.testSound.play().catch(() => {});
  }

  function stopTestSound() {
    const playing = state.testTone;
    state.testTone = null;
    delete el.speakerTest.dataset.playing;
    el.testSound.pause();
    el.testSound.srcObject = null;
    if (playing) playing.context.close().catch(() => {});
  }

  /** The device lists live on the set-up screens, and in a dialog in the waiting room and the call. */
  function placeDevicePanel(where) {
    const home = where === 'page' ? el.deviceHome : el.deviceDialogBody;
    if (el.devicePanel.parentElement !== home) home.append(el.devicePanel);
  }

  function openDeviceDialog() {
    placeDevicePanel('dialog');
    el.deviceDialog.showModal();
    refreshDevices().catch(() => {});
  }

  function closeDialogs() {
    for (const dialog of [el.deviceDialog, el.leaveDialog]) if (dialog.open) dialog.close();
  }

  // --- the call screen: elapsed time, full screen, leaving -----------------------------

  function startElapsed() {
    if (state.admittedAt === null) {
      state.admittedAt = Date.now();
      saveStored();
    }
    const tick = () => {
      const seconds = Math.max(0, Math.floor((Date.now() - state.admittedAt) / 1000));
      el.elapsed.textContent = formatDuration(seconds);
      el.elapsed.dateTime = `PT${seconds}S`;
    };
    tick();
    if (state.elapsedTimer === null) state.elapsedTimer = setInterval(tick, 1000);
  }

  function stopElapsed() {
    clearInterval(state.elapsedTimer);
    state.elapsedTimer = null;
  }

  function fullscreenSupported(figure) {
    return Boolean(document.fullscreenEnabled && figure.requestFullscreen);
  }

  function toggleFullscreen(peer) {
    if (document.fullscreenElement === peer.figure) {
      document.exitFullscreen().catch(() => {});
    } else if (fullscreenSupported(peer.figure)) {
      peer.figure.requestFullscreen({ navigationUI: 'hide' }).catch(() => {
        announce('This browser did not allow full screen.', 'warning');
      });
    } else if (peer.video.webkitEnterFullscreen) {
      peer.video.webkitEnterFullscreen();  // iPhone Safari: only a video element can go full screen
    }
  }

  function leaveFullscreen() {
    if (document.fullscreenElement) document.exitFullscreen().catch(() => {});
  }

  document.addEventListener('fullscreenchange', () => {
    const full = document.fullscreenElement;
    for (const peer of state.peers.values()) peer.showFullscreen(full === peer.figure);
    const peer = [...state.peers.values()].find((p) => p.figure === full);
    if (peer) announce(`Showing ${peer.name} full screen. Press Escape to go back.`);
    document.body.dataset.fullscreen = peer ? peer.id : '';
  });

  // Escape leaves full screen (browsers do this themselves; this covers those that pass the key on).
  document.addEventListener('keydown', (event) => {
    if (event.key === 'Escape' && document.fullscreenElement) leaveFullscreen();
  });

  function confirmLeave() {
    el.leaveDialog.returnValue = '';
    el.leaveDialog.showModal();
    el.leaveStay.focus();  // the safe choice first, whatever the browser's autofocus does
  }

  // --- signalling socket ---------------------------------------------------------------

  function socketUrl() {
    const scheme = window.location.protocol === 'https:' ? 'wss:' : 'ws:';
    return `${scheme}//${window.location.host}${SIGNALLING_PATH}`;
  }

  function send(message) {
    const ws = state.socket;
    if (!ws || ws.readyState !== WebSocket.OPEN) return false;
    ws.send(JSON.stringify({ v: PROTOCOL_VERSION, ...message }));
    return true;
  }

  function clearSocketTimers() {
    for (const timer of state.socketTimers) clearInterval(timer);
    state.socketTimers = [];
  }

  function dropSocket(ws) {
    ws.onopen = null;
    ws.onmessage = null;
    ws.onclose = null;
    ws.onerror = null;
    try {
      ws.close(1000);
    } catch (_) { /* already closed */ }
  }

  function connect() {
    clearTimeout(state.reconnectTimer);
    state.reconnectTimer = null;
    if (state.socket) dropSocket(state.socket);
    clearSocketTimers();
    let ws;
    try {
      ws = new WebSocket(socketUrl());
    } catch (_) {
      showMessage('unreachable');
      return;
    }
    state.socket = ws;
    state.lastFrameAt = Date.now();
    ws.onopen = () => {
      const hello = { type: 'hello', join_token: state.ticket.token };
      if (state.resumeToken) hello.resume_token = state.resumeToken;
      send(hello);
    };
    ws.onmessage = (event) => {
      if (ws !== state.socket) return;
      state.lastFrameAt = Date.now();
      if (typeof event.data !== 'string') return;
      let message;
      try {
        message = JSON.parse(event.data);
      } catch (_) {
        return;
      }
      if (!message || typeof message.type !== 'string') return;
      handleMessage(message).catch((err) => console.error('signalling message failed', message.type, err));
    };
    ws.onclose = (event) => {
      if (ws !== state.socket) return;
      onSocketClosed(event.code, event.reason);
    };
    state.socketTimers.push(setInterval(() => {
      if (ws !== state.socket) return;
      if (Date.now() - state.lastFrameAt > SILENT_SOCKET_MS) {
        // The network vanished without a close frame: treat it as a drop.
        dropSocket(ws);
        onSocketClosed(1006, 'silent');
        return;
      }
      send({ type: 'ping' });
    }, PING_EVERY_MS));
  }

  function onSocketClosed(code) {
    const wasWelcomed = state.status !== null;
    state.socket = null;
    clearSocketTimers();
    if (state.finished) return;
    if (state.denied || code === 4403) {
      leaveCall();
      showMessage(state.denied ? 'denied' : 'forbidden', state.denyReason ? {
        hint: `Message from the clinician: “${state.denyReason}”`,
      } : undefined);
      forgetStored();
      return;
    }
    if (state.replaced || code === 4409) {
      leaveCall();
      showMessage('replaced');
      return;
    }
    if (code === 4410 || code === 4404) {
      const inCall = state.status === 'admitted';
      leaveCall();
      showMessage(inCall ? 'ended' : 'consultation_over');
      forgetStored();
      return;
    }
    if (code === 4401) {
      if (Date.parse(state.ticket.not_before) > Date.now() - 60000) {
        // Our clock may run ahead of the server's: the token is simply not valid yet.
        scheduleReconnect(wasWelcomed);
        return;
      }
      leaveCall();
      showMessage('access_expired');
      forgetStored();
      return;
    }
    if (code === 4400 || code === 4429) {
      leaveCall();
      showMessage('server_error');
      return;
    }
    // 1001 (server restarting), 1006 (network), 1011, 1013, 4408, 4430, …: come back with the resume token.
    scheduleReconnect(wasWelcomed);
  }

  function scheduleReconnect(wasWelcomed) {
    if (!state.everWelcomed) {
      state.firstAttempts += 1;
      if (state.firstAttempts >= FIRST_CONNECT_ATTEMPTS) {
        leaveCall();
        showMessage('unreachable');
        return;
      }
    } else {
      if (state.reconnectSince === null) state.reconnectSince = Date.now();
      if (Date.now() - state.reconnectSince > MAX_RECONNECT_MS) {
        leaveCall();
        showMessage('connection_lost');
        return;
      }
      if (wasWelcomed || state.reconnectAttempt === 0) {
        announce('The connection was interrupted. Reconnecting…', 'warning');
      }
    }
    state.status = null;
    const delay = Math.min(500 * 2 ** state.reconnectAttempt, 8000);
    state.reconnectAttempt += 1;
    state.reconnectTimer = setTimeout(connect, delay);
  }

  window.addEventListener('online', () => {
    if (state.reconnectTimer !== null) connect();
  });

  // --- messages from the server --------------------------------------------------------

  async function handleMessage(m) {
    if (state.finished) return;
    switch (m.type) {
      case 'welcome': return onWelcome(m);
      case 'admitted': return onAdmitted(m.participants || []);
      case 'ice_servers': return useIceServers(m);
      case 'denied':
        state.denied = true;
        state.denyReason = typeof m.reason === 'string' && m.reason ? m.reason : null;
        return undefined;
      case 'returned': return onReturned(m.reason);
      case 'replaced':
        state.replaced = true;
        return undefined;
      case 'suspended':
        announce('Your connection is paused by the service.', 'warning');
        return undefined;
      case 'consultation.live':
        announce('The consultation has started.');
        return undefined;
      case 'consultation.ended':
        leaveCall();
        forgetStored();
        showMessage('ended');
        return undefined;
      case 'participant.joined':
      case 'participant.admitted':
      case 'participant.returned':
      case 'participant.denied':
      case 'participant.suspended':
      case 'participant.disconnected':
      case 'participant.resumed':
      case 'participant.left':
        return onParticipantEvent(m.type, m.participant);
      case 'offer': return onOffer(m);
      case 'answer': return onAnswer(m);
      case 'ice': return onIce(m);
      case 'error':
        // The socket stays open; a close follows if the error is fatal. Never show raw text.
        console.warn('signalling error', m.code);
        return undefined;
      default:
        return undefined;  // pong, ack, posture.accepted: nothing to do
    }
  }

  // TURN credentials from the welcome, then from each renewal the server sends before they
  // expire: every new RTCPeerConnection (first contact or recovery) takes the latest. Live
  // peer connections keep the relay allocation they already have.
  function useIceServers(m) {
    state.iceServers = (m.ice_servers || []).map((s) => {
      const server = { urls: s.urls };
      if (s.username) server.username = s.username;
      if (s.credential) server.credential = s.credential;
      return server;
    });
    state.icePolicy = m.ice_policy === 'relay' ? 'relay' : 'all';
  }

  function onWelcome(m) {
    state.everWelcomed = true;
    state.firstAttempts = 0;
    state.reconnectAttempt = 0;
    const reconnected = state.reconnectSince !== null;
    state.reconnectSince = null;
    state.me = m.participant_id;
    state.resumeToken = m.resume_token;
    state.resumeGraceMs = (m.resume_grace_s || 60) * 1000;
    useIceServers(m);
    saveStored();
    state.participants.clear();
    for (const p of m.participants || []) state.participants.set(p.id, p);
    if (['ended', 'cancelled', 'no_show'].includes(m.consultation_state)) {
      leaveCall();
      forgetStored();
      showMessage('consultation_over');
      return;
    }
    if (reconnected) announce('You are connected again.');
    if (m.status === 'admitted') {
      const others = (m.participants || []).filter((p) => p.id !== state.me && p.status === 'admitted');
      enterCall(others, { resumed: Boolean(m.resumed) });
    } else {
      enterWaiting('joined');
    }
  }

  const WAITING_LEADS = {
    joined: 'The clinician will let you in shortly.',
    returned: 'The clinician has moved you back to the waiting room. They will let you in again shortly.',
    host_left: 'The clinician has left the call for a moment. Please wait here; they will let you in again.',
  };

  /** In the waiting room the server tells us about the clinician only: say whether they are here. */
  function showHostPresence() {
    const host = [...state.participants.values()].find((p) => p.role === 'host');
    el.hostPresence.textContent = host && host.connected
      ? 'The clinician is online.'
      : 'The clinician has not joined yet.';
  }

  function enterWaiting(why) {
    closeAllPeers();
    stopElapsed();
    state.status = 'waiting';
    el.waitingLead.textContent = WAITING_LEADS[why] || WAITING_LEADS.joined;
    showHostPresence();
    el.waitingNote.textContent = 'Please keep this page open. You can check your camera and microphone below.';
    document.title = 'Waiting room – Video consultation';
    show('room', 'waiting');
  }

  function onAdmitted(participants) {
    enterCall(participants.filter((p) => p.id !== state.me), { resumed: false });
    announce('The clinician has let you in. You are now in the consultation.');
  }

  function enterCall(others, { resumed }) {
    state.status = 'admitted';
    for (const p of others) state.participants.set(p.id, p);
    const wanted = new Set(others.filter((p) => p.status === 'admitted').map((p) => p.id));
    for (const id of [...state.peers.keys()]) if (!wanted.has(id)) removePeer(id);
    for (const p of others) {
      if (p.status !== 'admitted') continue;
      const existing = state.peers.get(p.id);
      if (existing) {
        existing.setName(p.name);
        // After a socket resume the media path may have survived; if not, recover it now.
        if (resumed && existing.broken()) existing.recoverSoon(0);
      } else {
        addPeer(p);
      }
    }
    document.title = 'In consultation – Video consultation';
    // Already in the call (a resumed socket): leave the screen and the keyboard focus alone.
    if (document.body.dataset.screen !== 'call') show('room', 'call');
    startElapsed();
    startStats();
  }

  function onReturned(reason) {
    const why = reason === 'host_left' ? 'host_left' : 'returned';
    announce(why === 'host_left'
      ? 'The clinician has left the call. You are back in the waiting room.'
      : 'The clinician has moved you back to the waiting room.');
    enterWaiting(why);
  }

  function onParticipantEvent(type, p) {
    if (!p || p.id === state.me) return;
    if (type === 'participant.left' || type === 'participant.denied') state.participants.delete(p.id);
    else state.participants.set(p.id, p);
    if (state.status === 'waiting') showHostPresence();
    if (state.status !== 'admitted') return;
    const peer = state.peers.get(p.id);
    switch (type) {
      case 'participant.admitted':
        if (!peer) addPeer(p);
        announce(`${p.name} has joined the consultation.`);
        break;
      case 'participant.left':
      case 'participant.returned':
      case 'participant.denied':
        if (peer) {
          removePeer(p.id);
          announce(`${p.name} has left the consultation.`);
        }
        break;
      case 'participant.disconnected':
        if (peer) peer.setNote('Connection interrupted. Waiting for them to reconnect…');
        break;
      case 'participant.resumed':
        if (peer) {
          peer.setNote('');
          if (peer.broken()) peer.recoverSoon(0);
        }
        break;
      case 'participant.suspended':
        if (peer) peer.setNote('Paused by the service');
        break;
      default:
        break;
    }
  }

  // --- WebRTC: one peer connection per other participant -----------------------------

  function newConnectionId() {
    const bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return btoa(String.fromCharCode(...bytes)).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
  }

  /**
   * One other participant: their tile and the current RTCPeerConnection with them.
   *
   * Who offers follows clinic_client's rule: for each pair, the lower participant id is
   * "impolite" and makes offers; the other answers. A specialist's id sorts after "host:"
   * and "room:", so this page normally only answers. Either side may negotiate a fresh
   * connection (new connection_id) to recover a broken one; the answering side waits a
   * little longer first, so both rarely do it at once — and if they do, the impolite side
   * keeps its own offer and the polite side answers.
   */
  class Peer {
    constructor(view) {
      this.id = view.id;
      this.name = view.name;
      this.polite = state.me > view.id;
      this.pc = null;
      this.connectionId = null;
      this.retired = new Set();
      this.remoteIce = [];          // candidates that arrived before the remote description
      this.localIce = [];           // our candidates waiting for our offer/answer to be sent
      this.described = false;       // our offer/answer for the current connection was sent
      this.createdAt = Date.now();
      this.connectedOnce = false;
      this.badSince = null;
      this.attempts = 0;
      this.recoverTimer = null;
      this.queue = Promise.resolve();
      this.stats = null;
      this.senders = {};            // what the current connection sends: {audio, video} RTCRtpSenders
      this.buildTile();
    }

    buildTile() {
      const figure = document.createElement('figure');
      figure.className = 'tile remote-tile';
      figure.dataset.participant = this.id;
      const video = document.createElement('video');
      video.autoplay = true;
      video.playsInline = true;
      const waiting = document.createElement('p');
      waiting.className = 'waiting-text';
      waiting.textContent = 'Connecting…';
      const actions = document.createElement('div');
      actions.className = 'tile-actions';
      const full = document.createElement('button');
      full.type = 'button';
      full.className = 'control tile-button fullscreen-button';
      full.textContent = 'Full screen';
      full.addEventListener('click', () => toggleFullscreen(this));
      video.addEventListener('dblclick', () => toggleFullscreen(this));
      full.hidden = !fullscreenSupported(figure) && !video.webkitEnterFullscreen;
      actions.append(full);
      const caption = document.createElement('figcaption');
      const name = document.createElement('span');
      name.className = 'name';
      const note = document.createElement('span');
      note.className = 'tile-state';
      const quality = document.createElement('span');
      quality.className = 'quality';
      caption.append(name, note, quality);
      figure.append(video, waiting, actions, caption);
      this.figure = figure;
      this.video = video;
      this.actions = actions;
      this.fullButton = full;
      this.waitingText = waiting;
      this.nameEl = name;
      this.noteEl = note;
      this.qualityEl = quality;
      this.setName(this.name);
      this.setNote('Connecting…');
      video.addEventListener('playing', () => { this.waitingText.hidden = true; });
      applySpeaker(video);
      el.grid.append(figure);
    }

    setName(name) {
      this.name = name;
      this.nameEl.textContent = name;
      this.video.setAttribute('aria-label', `Video of ${name}`);
      this.showFullscreen(document.fullscreenElement === this.figure);
    }

    showFullscreen(on) {
      this.fullButton.textContent = on ? 'Exit full screen' : 'Full screen';
      this.fullButton.setAttribute('aria-label', on ? 'Exit full screen' : `Show ${this.name} full screen`);
      this.figure.classList.toggle('is-fullscreen', on);
    }

    /** Send another camera or microphone on this connection: replaceTrack, no offer/answer. */
    async replaceTrack(track) {
      const sender = this.senders[track.kind];
      if (this.pc && sender) await sender.replaceTrack(track);
    }

    setNote(text) {
      this.noteEl.textContent = text;
    }

    run(task) {
      // One negotiation step at a time per peer: offers, answers and candidates interleave otherwise.
      this.queue = this.queue.then(task).catch((err) => console.error('negotiation failed', this.id, err));
      return this.queue;
    }

    broken() {
      const s = this.pc ? this.pc.connectionState : 'closed';
      return s === 'failed' || s === 'closed' || s === 'disconnected';
    }

    newConnection(connectionId) {
      this.retire();
      const pc = new RTCPeerConnection({
        iceServers: state.iceServers,
        iceTransportPolicy: state.icePolicy,
        bundlePolicy: 'max-bundle',
      });
      this.pc = pc;
      this.connectionId = connectionId;
      this.remoteIce = [];
      this.localIce = [];
      this.described = false;
      this.createdAt = Date.now();
      this.connectedOnce = false;
      const stream = new MediaStream();
      this.video.srcObject = stream;
      this.senders = {};
      if (state.localStream) {
        for (const track of state.localStream.getTracks()) {
          this.senders[track.kind] = pc.addTrack(track, state.localStream);
        }
      }
      pc.ontrack = (event) => {
        if (this.pc !== pc) return;
        stream.addTrack(event.track);
        this.play();
      };
      pc.onicecandidate = (event) => {
        if (this.pc !== pc) return;
        const c = event.candidate;
        const ice = {
          type: 'ice',
          to: this.id,
          connection_id: connectionId,
          candidate: c ? c.candidate : '',
          sdpMid: c ? c.sdpMid : null,
          sdpMLineIndex: c ? c.sdpMLineIndex : null,
          usernameFragment: c && c.usernameFragment ? c.usernameFragment : null,
        };
        if (this.described) send(ice);
        else this.localIce.push(ice);
      };
      pc.onconnectionstatechange = () => {
        if (this.pc === pc) this.onState();
      };
      return pc;
    }

    sentDescription() {
      this.described = true;
      for (const ice of this.localIce.splice(0)) send(ice);
    }

    retire() {
      if (!this.pc) return;
      const old = this.pc;
      this.retired.add(this.connectionId);
      this.pc = null;
      old.ontrack = null;
      old.onicecandidate = null;
      old.onconnectionstatechange = null;
      old.close();
    }

    play() {
      this.video.play().then(() => {
        if (this.soundButton) this.soundButton.remove();
        this.soundButton = null;
      }).catch((err) => {
        if (err && err.name === 'NotAllowedError') this.offerSoundButton();
      });
    }

    offerSoundButton() {
      // The browser would not play sound without a click: show the picture and ask for one.
      if (this.soundButton) return;
      this.video.muted = true;
      this.video.play().catch(() => {});
      const button = document.createElement('button');
      button.type = 'button';
      button.className = 'control primary sound-button';
      button.textContent = `Turn on sound for ${this.name}`;
      button.addEventListener('click', () => {
        this.video.muted = false;
        this.play();
      });
      this.soundButton = button;
      this.actions.append(button);
    }

    onState() {
      const s = this.pc.connectionState;
      if (s === 'connected') {
        this.connectedOnce = true;
        this.badSince = null;
        this.attempts = 0;
        this.setNote('');
        clearTimeout(this.recoverTimer);
        this.recoverTimer = null;
      } else if (s === 'disconnected') {
        this.setNote('Connection interrupted…');
        this.recoverSoon();
      } else if (s === 'failed') {
        this.setNote('Connection lost. Reconnecting…');
        this.recoverSoon();
      } else if (s === 'connecting' || s === 'new') {
        this.setNote(this.connectedOnce ? 'Reconnecting…' : 'Connecting…');
      }
    }

    /** Negotiate a fresh connection after a back-off, unless the other side does it first. */
    recoverSoon(delay) {
      if (this.recoverTimer !== null) return;
      const base = Math.min(RECOVER_IMPOLITE_MS * 2 ** this.attempts, MAX_RECOVER_DELAY_MS);
      const wait = delay !== undefined ? delay : base + (this.polite ? RECOVER_POLITE_EXTRA_MS : 0);
      const pcAtStart = this.pc;
      this.recoverTimer = setTimeout(() => {
        this.recoverTimer = null;
        if (state.peers.get(this.id) !== this || state.status !== 'admitted') return;
        // The other side already replaced the connection, or it healed by itself.
        if (this.pc !== pcAtStart && this.pc && !this.broken()) return;
        if (this.pc && this.pc.connectionState === 'connected') return;
        this.attempts += 1;
        this.run(() => this.offerFresh());
      }, wait);
    }

    async offerFresh() {
      const connectionId = newConnectionId();
      const pc = this.newConnection(connectionId);
      await pc.setLocalDescription(await pc.createOffer());
      if (this.pc !== pc) return;
      send({ type: 'offer', to: this.id, sdp: pc.localDescription.sdp, connection_id: connectionId });
      this.sentDescription();
      this.watchConnect(pc);
    }

    /** Nothing connected in time (lost offer, blocked path): try a fresh connection. */
    watchConnect(pc) {
      setTimeout(() => {
        if (this.pc !== pc || state.peers.get(this.id) !== this) return;
        if (pc.connectionState !== 'connected' && !this.connectedOnce) this.recoverSoon();
      }, CONNECT_TIMEOUT_MS);
    }

    async onOffer(m) {
      if (this.retired.has(m.connection_id)) return;
      let pc = this.pc;
      if (pc && this.connectionId === m.connection_id) {
        // Renegotiation of the current connection.
        if (pc.signalingState !== 'stable') {
          if (!this.polite) return;
          await pc.setLocalDescription({ type: 'rollback' });
        }
      } else {
        const ourOfferPending = pc && pc.signalingState === 'have-local-offer'
          && Date.now() - this.createdAt < CONNECT_TIMEOUT_MS;
        if (ourOfferPending && !this.polite) return;  // glare: the impolite side keeps its offer
        pc = this.newConnection(m.connection_id);
        this.watchConnect(pc);
      }
      clearTimeout(this.recoverTimer);
      this.recoverTimer = null;
      await pc.setRemoteDescription({ type: 'offer', sdp: m.sdp });
      await this.flushRemoteIce(pc);
      await pc.setLocalDescription();
      if (this.pc !== pc) return;
      send({ type: 'answer', to: this.id, sdp: pc.localDescription.sdp, connection_id: m.connection_id });
      this.sentDescription();
    }

    async onAnswer(m) {
      const pc = this.pc;
      if (!pc || this.connectionId !== m.connection_id || pc.signalingState !== 'have-local-offer') return;
      await pc.setRemoteDescription({ type: 'answer', sdp: m.sdp });
      await this.flushRemoteIce(pc);
    }

    async onIce(m) {
      const pc = this.pc;
      if (!pc || (m.connection_id && m.connection_id !== this.connectionId)) return;
      const candidate = {
        candidate: m.candidate || '',
        sdpMid: m.sdpMid,
        sdpMLineIndex: m.sdpMLineIndex,
      };
      if (m.usernameFragment) candidate.usernameFragment = m.usernameFragment;
      if (!pc.remoteDescription) {
        this.remoteIce.push(candidate);
        return;
      }
      await this.addIce(pc, candidate);
    }

    async flushRemoteIce(pc) {
      for (const candidate of this.remoteIce.splice(0)) await this.addIce(pc, candidate);
    }

    async addIce(pc, candidate) {
      try {
        if (!candidate.candidate) await pc.addIceCandidate();
        else await pc.addIceCandidate(candidate);
      } catch (err) {
        console.warn('ignored an ICE candidate', err && err.name);
      }
    }

    async updateStats() {
      const pc = this.pc;
      if (!pc || pc.connectionState !== 'connected') {
        this.qualityEl.textContent = '';
        this.qualityEl.className = 'quality';
        return;
      }
      const report = await pc.getStats();
      let pairId = null;
      let rttMs = null;
      let lost = 0;
      let received = 0;
      report.forEach((s) => {
        if (s.type === 'transport' && s.selectedCandidatePairId) pairId = s.selectedCandidatePairId;
      });
      report.forEach((s) => {
        if (s.type === 'candidate-pair' && (s.id === pairId || (!pairId && s.nominated && s.state === 'succeeded'))
            && typeof s.currentRoundTripTime === 'number') {
          rttMs = s.currentRoundTripTime * 1000;
        }
        if (s.type === 'inbound-rtp') {
          lost += Math.max(0, s.packetsLost || 0);
          received += s.packetsReceived || 0;
        }
      });
      if (rttMs === null) {
        report.forEach((s) => {
          if (s.type === 'remote-inbound-rtp' && typeof s.roundTripTime === 'number' && rttMs === null) {
            rttMs = s.roundTripTime * 1000;
          }
        });
      }
      const previous = this.stats && this.stats.pc === pc ? this.stats : { lost: 0, received: 0 };
      const dLost = lost - previous.lost;
      const dReceived = received - previous.received;
      this.stats = { pc, lost, received };
      const lossPct = dLost + dReceived > 0 ? (100 * dLost) / (dLost + dReceived) : 0;
      let level = 'good';
      if ((rttMs !== null && rttMs > 600) || lossPct > 8) level = 'poor';
      else if ((rttMs !== null && rttMs > 300) || lossPct > 2) level = 'fair';
      const words = { good: 'Good connection', fair: 'Fair connection', poor: 'Poor connection' };
      const parts = [words[level]];
      if (rttMs !== null) parts.push(`delay ${Math.round(rttMs)} ms`);
      parts.push(`${lossPct < 10 ? lossPct.toFixed(1) : Math.round(lossPct)}% lost`);
      this.qualityEl.textContent = parts.join(' · ');
      this.qualityEl.className = `quality ${level}`;
      this.figure.dataset.quality = level;
      // Say it out loud only when it lasts (two samples running), and say when it is over.
      this.poorSamples = level === 'poor' ? (this.poorSamples || 0) + 1 : 0;
      if (this.poorSamples === 2) {
        this.poorWarning = `The connection with ${this.name} is poor. The picture or sound may break up.`;
        announce(this.poorWarning, 'warning');
      } else if (level !== 'poor' && this.poorWarning) {
        if (el.status.textContent === this.poorWarning) announce(`The connection with ${this.name} is better again.`);
        this.poorWarning = null;
      }
    }

    close() {
      clearTimeout(this.recoverTimer);
      this.recoverTimer = null;
      this.retire();
      this.video.srcObject = null;
      this.figure.remove();
    }
  }

  function addPeer(view) {
    const peer = new Peer(view);
    state.peers.set(view.id, peer);
    if (!peer.polite) {
      peer.run(() => peer.offerFresh());
    } else {
      // The other side offers; if nothing arrives in time, offer ourselves (as clinic_client does).
      setTimeout(() => {
        if (state.peers.get(peer.id) === peer && !peer.pc) peer.recoverSoon(0);
      }, CONNECT_TIMEOUT_MS);
    }
    return peer;
  }

  function removePeer(id) {
    const peer = state.peers.get(id);
    if (!peer) return;
    state.peers.delete(id);
    peer.close();
  }

  function closeAllPeers() {
    for (const id of [...state.peers.keys()]) removePeer(id);
    stopStats();
  }

  function peerFor(m) {
    if (state.status !== 'admitted' || typeof m.from !== 'string') return null;
    const existing = state.peers.get(m.from);
    if (existing) return existing;
    // An offer can overtake the "participant.admitted" event; the hub relays only between admitted people.
    const view = state.participants.get(m.from) || { id: m.from, name: 'Participant', status: 'admitted' };
    const peer = new Peer(view);
    state.peers.set(peer.id, peer);
    return peer;
  }

  function onOffer(m) {
    const peer = peerFor(m);
    if (peer) peer.run(() => peer.onOffer(m));
  }

  function onAnswer(m) {
    const peer = state.peers.get(m.from);
    if (peer) peer.run(() => peer.onAnswer(m));
  }

  function onIce(m) {
    const peer = state.peers.get(m.from);
    if (peer) peer.run(() => peer.onIce(m));
  }

  function startStats() {
    if (state.statsTimer !== null) return;
    state.statsTimer = setInterval(() => {
      for (const peer of state.peers.values()) {
        peer.updateStats().catch(() => {});
      }
    }, STATS_EVERY_MS);
  }

  function stopStats() {
    clearInterval(state.statsTimer);
    state.statsTimer = null;
  }

  /** Stop everything this page runs: peers, socket, camera. */
  function leaveCall() {
    leaveFullscreen();
    stopElapsed();
    closeAllPeers();
    clearTimeout(state.reconnectTimer);
    state.reconnectTimer = null;
    if (state.socket) dropSocket(state.socket);
    state.socket = null;
    clearSocketTimers();
    state.status = null;
    stopCamera();
  }

  function leave() {
    send({ type: 'leave' });
    const ws = state.socket;
    state.socket = null;
    // Let the leave frame go out before closing.
    if (ws) {
      ws.onclose = null;
      setTimeout(() => dropSocket(ws), 200);
    }
    state.resumeToken = null;
    saveStored();
    leaveCall();
    showMessage('left');
  }

  // --- start ---------------------------------------------------------------------------

  /** With a join ticket: camera, then the signalling socket (waiting room, call). */
  async function join() {
    state.finished = false;
    state.denied = false;
    state.denyReason = null;
    state.replaced = false;
    state.everWelcomed = false;
    state.firstAttempts = 0;
    state.reconnectAttempt = 0;
    state.reconnectSince = null;
    try {
      await openCamera();
    } catch (err) {
      showMessage(err instanceof PageError ? err.kind : 'server_error');
      return;
    }
    updateControls();
    el.loadingText.textContent = 'Connecting to the consultation…';
    show('loading');
    connect();
  }

  /**
   * Check the invite (from the link, or kept from before a reload) without spending it, then
   * show the set-up check: early, with the day and time, or within the window, with Join.
   */
  async function start() {
    state.finished = false;
    const fromLink = takeFragmentToken();
    const stored = loadStored();
    if (fromLink === null && stored) {
      // A reload after joining: the invite was already spent in this tab; carry on with its join token.
      state.ticket = stored.ticket;
      state.resumeToken = stored.resume || null;
      state.inviter = stored.inviter || null;
      state.admittedAt = typeof stored.admitted_at === 'number' ? stored.admitted_at : null;
      fillDetails();
      await join();
      return;
    }
    const invite = fromLink !== null ? fromLink : pendingInvite();
    if (!invite) {
      showMessage('invalid_link');
      return;
    }
    // Kept (this tab only) until it is redeemed or refused, so a reload checks it again.
    keepPendingInvite(invite);
    el.loadingText.textContent = 'Checking your invite link…';
    show('loading');
    try {
      state.check = await postInvite(CHECK_PATH, invite);
    } catch (err) {
      const kind = err instanceof PageError ? err.kind : 'server_error';
      if (kind !== 'unreachable' && kind !== 'server_error') keepPendingInvite(null);
      showMessage(kind);
      return;
    }
    state.invite = invite;
    fillDetails();
    if (state.check.status === 'early') {
      enterEarly();
      return;
    }
    try {
      await enterSetup();
    } catch (err) {
      showMessage(err instanceof PageError ? err.kind : 'server_error');
    }
  }

  el.messageAction.addEventListener('click', () => {
    el.messageAction.hidden = true;
    el.loadingText.textContent = state.ticket ? 'Connecting to the consultation…' : 'Checking your invite link…';
    show('loading');
    (state.ticket ? join() : start()).catch((err) => {
      console.error('retry failed', err);
      showMessage('server_error');
    });
  });
  el.checkButton.addEventListener('click', () => {
    toggleCheck().catch((err) => console.error('set-up check failed', err));
  });
  el.joinButton.addEventListener('click', () => {
    joinNow().catch((err) => {
      console.error('join failed', err);
      showMessage('server_error');
    });
  });
  for (const kind of DEVICE_KINDS) {
    el.selects[kind].addEventListener('change', (event) => {
      switchDevice(kind, event.target.value).catch((err) => console.error('device switch failed', err));
    });
  }
  if (navigator.mediaDevices && navigator.mediaDevices.addEventListener) {
    // A headset or a dock plugged in or out: the lists follow.
    navigator.mediaDevices.addEventListener('devicechange', () => {
      if (state.localStream) refreshDevices().catch(() => {});
    });
  }
  el.speakerTest.addEventListener('click', () => {
    playTestSound().catch((err) => console.error('test sound failed', err));
  });
  el.mic.addEventListener('click', toggleMic);
  el.camera.addEventListener('click', toggleCamera);
  el.devices.addEventListener('click', openDeviceDialog);
  el.deviceDialogDone.addEventListener('click', () => el.deviceDialog.close());
  el.deviceDialog.addEventListener('close', () => {
    if (!state.finished) el.devices.focus();
  });
  el.leave.addEventListener('click', confirmLeave);
  el.leaveStay.addEventListener('click', () => el.leaveDialog.close('stay'));
  el.leaveConfirm.addEventListener('click', () => el.leaveDialog.close('leave'));
  el.leaveDialog.addEventListener('close', () => {
    if (el.leaveDialog.returnValue === 'leave') leave();
    else if (!state.finished) el.leave.focus();  // Stay, or Escape: back where they were
  });

  start().catch((err) => {
    console.error('start failed', err);
    showMessage('server_error');
  });
})();
