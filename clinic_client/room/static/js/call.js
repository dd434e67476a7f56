// The call on the room's screen: the camera and microphone, one Peer (the console's
// /shared/js/peer.js: who offers, glare, trickle ICE, recovery) per other participant in the
// call, the patient's own small picture and the "we can hear you" bar. Nothing here is
// pressed: peers come and go as the agent's room.state says.

import { Peer } from '/shared/js/peer.js';
import { HearingMeter } from './hearing.js';

const $ = (id) => document.getElementById(id);
const OFFER_WAIT_MS = 15000;

function iceServersOf(list) {
  return (list || []).map((s) => {
    const server = { urls: s.urls };
    if (s.username) server.username = s.username;
    if (s.credential) server.credential = s.credential;
    return server;
  });
}

export class RoomCall {
  constructor(send) {
    this.send = send;
    this.peers = new Map();
    this.me = '';
    this.iceServers = [];
    this.icePolicy = 'relay';
    this.stream = null;
    this.active = false;
    this.timers = [];
    this.hearing = new HearingMeter({ box: $('hearing'), meter: $('mic-level'), text: $('hearing-text') });
  }

  /**
   * Follow the `call` of a room.state (null: not in a call). `joinedLate`: this page has just
   * opened on a call already running (a reload): the others' connections were with the page
   * that went, so offer them fresh ones at once. `recover`: the link was interrupted: renew
   * any connection that broke meanwhile.
   */
  async update(call, { joinedLate = false, recover = false } = {}) {
    if (!call) {
      this.stop();
      return;
    }
    this.me = call.me;
    this.iceServers = iceServersOf(call.ice_servers);
    this.icePolicy = call.ice_policy === 'all' ? 'all' : 'relay';
    if (!this.active) {
      this.active = true;
      await this.startCamera();
    }
    const wanted = new Map(call.others.map((p) => [p.id, p]));
    for (const id of [...this.peers.keys()]) if (!wanted.has(id)) this.removePeer(id);
    for (const view of wanted.values()) {
      const peer = this.peers.get(view.id);
      if (!peer) this.addPeer(view, joinedLate);
      else {
        peer.setView(view);
        if (recover && peer.broken()) peer.recoverSoon(0);
      }
    }
  }

  /** An offer, answer or ICE candidate from another participant, relayed by the agent. */
  async onSignal(m) {
    if (!this.active || typeof m.from !== 'string') return;
    let peer = this.peers.get(m.from);
    if (m.type === 'offer' && !peer) {
      // An offer can overtake the room.state that lists its sender.
      peer = this.addPeer({ id: m.from, role: m.from.split(':')[0], name: '', status: 'admitted' }, false, false);
    }
    if (!peer) return;
    if (m.type === 'offer') peer.run(() => peer.onOffer(m));
    else if (m.type === 'answer') peer.run(() => peer.onAnswer(m));
    else peer.run(() => peer.onIce(m));
  }

  context() {
    return {
      me: this.me,
      grid: $('remote'),
      send: (m) => this.send(m),
      iceServers: () => this.iceServers,
      icePolicy: () => this.icePolicy,
      localStream: () => this.stream,
      audioOnly: () => false,
      stillWanted: (peer) => this.active && this.peers.get(peer.id) === peer,
      onSendBack: () => {},
    };
  }

  addPeer(view, offerNow, wait = true) {
    const peer = new Peer(view, this.context());
    peer.backButton.remove();   // the room sends nobody anywhere
    this.peers.set(view.id, peer);
    if (offerNow || !peer.polite) {
      peer.run(() => peer.offerFresh());
    } else if (wait) {
      // The other side offers; if nothing comes in time, offer ourselves.
      this.timers.push(setTimeout(() => {
        if (this.peers.get(peer.id) === peer && !peer.pc) peer.recoverSoon(0);
      }, OFFER_WAIT_MS));
    }
    return peer;
  }

  removePeer(id) {
    const peer = this.peers.get(id);
    this.peers.delete(id);
    if (peer) peer.close();
  }

  async startCamera() {
    const figure = $('self-view');
    try {
      this.stream = await navigator.mediaDevices.getUserMedia({
        audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
        video: { width: { ideal: 1280 }, height: { ideal: 720 } },
      });
    } catch (err) {
      // The call goes on: the patient still sees and hears the clinician.
      console.warn('no camera or microphone', err && err.name);
      this.stream = null;
      figure.dataset.camera = 'off';
      $('self-caption').textContent = 'Your camera is not working';
      this.hearing.start(null);
      return;
    }
    if (!this.active) {
      this.stopCamera();
      return;
    }
    const video = $('self-video');
    video.srcObject = this.stream;
    video.play().catch(() => {});
    figure.dataset.camera = 'on';
    $('self-caption').textContent = 'You';
    this.hearing.start(this.stream);
  }

  stopCamera() {
    if (this.stream) for (const track of this.stream.getTracks()) track.stop();
    this.stream = null;
    $('self-video').srcObject = null;
    $('self-view').dataset.camera = 'off';
    this.hearing.stop();
  }

  /** Out of the call: hang up with everyone and turn the camera off. */
  stop() {
    this.active = false;
    for (const timer of this.timers.splice(0)) clearTimeout(timer);
    for (const id of [...this.peers.keys()]) this.removePeer(id);
    this.stopCamera();
  }
}
