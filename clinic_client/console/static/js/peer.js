// One other participant in the call: their tile and the RTCPeerConnection with them.
// The logic is the specialist page's (server/web/static/join.js, docs/web.md "Media"):
// the lower participant id offers ("host:" sorts first, so the host normally offers);
// connection_id names one peer connection (a new id is a fresh connection, the same id a
// renegotiation); on glare the lower id keeps its offer; trickle ICE is held until the
// description it belongs to has gone out / been set; a broken connection is replaced by a
// fresh one after 2 s doubling to 30 s, the answering side 3 s later.

import { describeParticipant } from './app.js';
import { QualityMeter } from './quality.js';
import { h } from './screens.js';

const CONNECT_TIMEOUT_MS = 15000;
const RECOVER_IMPOLITE_MS = 2000;
const RECOVER_POLITE_EXTRA_MS = 3000;
const MAX_RECOVER_DELAY_MS = 30000;

export function newConnectionId() {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return btoa(String.fromCharCode(...bytes)).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

export class Peer {
  /**
   * `ctx` is the call: {me, send(msg), iceServers(), icePolicy(), localStream(), audioOnly(),
   * stillWanted(peer), onSendBack(peer), grid}.
   */
  constructor(view, ctx) {
    this.ctx = ctx;
    this.id = view.id;
    this.view = view;
    this.polite = ctx.me > view.id;
    this.pc = null;
    this.connectionId = null;
    this.retired = new Set();
    this.remoteIce = [];
    this.localIce = [];
    this.described = false;
    this.createdAt = Date.now();
    this.connectedOnce = false;
    this.attempts = 0;
    this.recoverTimer = null;
    this.connectTimer = null;
    this.queue = Promise.resolve();
    this.meter = new QualityMeter();
    this.quality = null;
    this.closed = false;
    this.buildTile();
  }

  buildTile() {
    const p = this.view;
    const figure = h('figure', { className: `tile remote-tile role-${p.role || 'other'}`, dataset: { participant: this.id, role: p.role || '' } });
    const video = h('video', { autoplay: true, playsinline: true });
    video.autoplay = true;
    video.playsInline = true;
    const waiting = h('p', { className: 'waiting-text' }, 'Connecting…');
    const audioOnly = h('p', { className: 'audio-only-text' }, 'Audio only: the picture is off.');
    const name = h('span', { className: 'name' });
    const note = h('span', { className: 'tile-state' });
    const quality = h('span', { className: 'quality-line' });
    const back = h('button', { type: 'button', className: 'control small send-back', dataset: { action: 'send-back' } }, 'Send back to the waiting room');
    back.addEventListener('click', () => this.ctx.onSendBack(this));
    const caption = h('figcaption', {}, name, note, quality, back);
    figure.append(video, waiting, audioOnly, caption);
    Object.assign(this, { figure, video, waitingText: waiting, nameEl: name, noteEl: note, qualityEl: quality, backButton: back });
    video.addEventListener('playing', () => { waiting.hidden = true; });
    this.setView(p);
    this.setNote('Connecting…');
    // The patient's room first and large; others after it.
    if (p.role === 'room') this.ctx.grid.prepend(figure);
    else this.ctx.grid.append(figure);
  }

  setView(view) {
    this.view = { ...this.view, ...view };
    const words = describeParticipant(this.view);
    this.nameEl.textContent = words;
    this.video.setAttribute('aria-label', `Video of ${words}`);
    this.backButton.setAttribute('aria-label', `Send back to the waiting room: ${words}`);
  }

  setNote(text) {
    this.noteEl.textContent = text;
  }

  run(task) {
    // One negotiation step at a time per peer.
    this.queue = this.queue.then(task).catch((err) => console.warn('negotiation step failed', this.id, err && err.name));
    return this.queue;
  }

  broken() {
    const s = this.pc ? this.pc.connectionState : 'closed';
    return s === 'failed' || s === 'closed' || s === 'disconnected';
  }

  newConnection(connectionId) {
    this.retire();
    const pc = new RTCPeerConnection({
      iceServers: this.ctx.iceServers(),
      iceTransportPolicy: this.ctx.icePolicy(),
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
    const local = this.ctx.localStream();
    if (local) {
      for (const track of local.getTracks()) {
        const sender = pc.addTrack(track, local);
        if (track.kind === 'video' && this.ctx.audioOnly()) sender.replaceTrack(null).catch(() => {});
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
      if (this.described) this.ctx.send(ice);
      else this.localIce.push(ice);
    };
    pc.onconnectionstatechange = () => {
      if (this.pc === pc) this.onState();
    };
    return pc;
  }

  /** Send or stop sending our picture on this connection (audio only), without renegotiating. */
  async setVideoSending(on) {
    if (!this.pc) return;
    const local = this.ctx.localStream();
    const track = local ? local.getVideoTracks()[0] || null : null;
    for (const transceiver of this.pc.getTransceivers()) {
      // The receiver's track always says which kind of media the transceiver carries.
      if (transceiver.receiver.track.kind !== 'video' || transceiver.stopped) continue;
      try {
        await transceiver.sender.replaceTrack(on ? track : null);
      } catch (_) { /* the connection is closing */ }
    }
  }

  sentDescription() {
    this.described = true;
    for (const ice of this.localIce.splice(0)) this.ctx.send(ice);
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
    const button = h('button', { type: 'button', className: 'control primary sound-button' }, `Turn on sound: ${describeParticipant(this.view)}`);
    button.addEventListener('click', () => {
      this.video.muted = false;
      this.play();
    });
    this.soundButton = button;
    this.figure.append(button);
  }

  onState() {
    const s = this.pc.connectionState;
    if (s === 'connected') {
      this.connectedOnce = true;
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

  recoverSoon(delay) {
    if (this.recoverTimer !== null || this.closed) return;
    const base = Math.min(RECOVER_IMPOLITE_MS * 2 ** this.attempts, MAX_RECOVER_DELAY_MS);
    const wait = delay !== undefined ? delay : base + (this.polite ? RECOVER_POLITE_EXTRA_MS : 0);
    const pcAtStart = this.pc;
    this.recoverTimer = setTimeout(() => {
      this.recoverTimer = null;
      if (this.closed || !this.ctx.stillWanted(this)) return;
      if (this.pc !== pcAtStart && this.pc && !this.broken()) return;
      if (this.pc && this.pc.connectionState === 'connected') return;
      this.attempts += 1;
      this.run(() => this.offerFresh());
    }, wait);
  }

  async offerFresh() {
    if (this.closed) return;
    const connectionId = newConnectionId();
    const pc = this.newConnection(connectionId);
    await pc.setLocalDescription(await pc.createOffer());
    if (this.pc !== pc) return;
    this.ctx.send({ type: 'offer', to: this.id, sdp: pc.localDescription.sdp, connection_id: connectionId });
    this.sentDescription();
    this.watchConnect(pc);
  }

  watchConnect(pc) {
    clearTimeout(this.connectTimer);
    this.connectTimer = setTimeout(() => {
      if (this.pc !== pc || this.closed) return;
      if (pc.connectionState !== 'connected' && !this.connectedOnce) this.recoverSoon();
    }, CONNECT_TIMEOUT_MS);
  }

  async onOffer(m) {
    if (this.retired.has(m.connection_id) || this.closed) return;
    let pc = this.pc;
    if (pc && this.connectionId === m.connection_id) {
      if (pc.signalingState !== 'stable') {
        if (!this.polite) return;
        await pc.setLocalDescription({ type: 'rollback' });
      }
    } else {
      const ourOfferPending = pc && pc.signalingState === 'have-local-offer'
        && Date.now() - this.createdAt < CONNECT_TIMEOUT_MS;
      if (ourOfferPending && !this.polite) return;  // glare: the lower id keeps its offer
      pc = this.newConnection(m.connection_id);
      this.watchConnect(pc);
    }
    clearTimeout(this.recoverTimer);
    this.recoverTimer = null;
    await pc.setRemoteDescription({ type: 'offer', sdp: m.sdp });
    await this.flushRemoteIce(pc);
    await pc.setLocalDescription();
    if (this.pc !== pc) return;
    this.ctx.send({ type: 'answer', to: this.id, sdp: pc.localDescription.sdp, connection_id: m.connection_id });
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
    const candidate = { candidate: m.candidate || '', sdpMid: m.sdpMid, sdpMLineIndex: m.sdpMLineIndex };
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
    } catch (_) {
      // A candidate for a description that has moved on: harmless.
    }
  }

  /** Sample the quality and show it on the tile; resolves to the sample (or null). */
  async updateQuality() {
    const q = await this.meter.sample(this.pc);
    this.quality = q;
    this.qualityEl.textContent = q ? q.text : '';
    this.figure.dataset.quality = q ? q.level : '';
    return q;
  }

  close() {
    this.closed = true;
    clearTimeout(this.recoverTimer);
    clearTimeout(this.connectTimer);
    this.recoverTimer = null;
    this.retire();
    this.video.srcObject = null;
    this.figure.remove();
  }
}
