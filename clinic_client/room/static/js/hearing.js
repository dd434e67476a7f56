// "We can hear you": the loudness of the room's own microphone, as a bar and in words, so a
// patient sees that their voice gets through. Words change only after 2 s of silence, so the
// sentence does not flicker between words.

const SAMPLE_MS = 100;
// The bar runs from -60 dB (a quiet room) to -10 dB (a loud voice close by); a voice at a
// normal distance fills about half of it. Above -45 dB counts as heard.
const FLOOR_DB = -60;
const RANGE_DB = 50;
const HEARD_LEVEL = 0.3;
const QUIET_AFTER_MS = 2000;
const WORDS = { yes: 'We can hear you', no: 'Your microphone is on' };

export class HearingMeter {
  constructor({ box, meter, text }) {
    Object.assign(this, { box, meter, text });
    this.context = null;
    this.timer = null;
    this.lastHeard = 0;
  }

  /** Listen to the stream's microphone (nothing to show without one). */
  start(stream) {
    this.stop();
    const track = stream ? stream.getAudioTracks()[0] : null;
    const Context = window.AudioContext || window.webkitAudioContext;
    if (!track || !Context) {
      this.box.dataset.hearing = 'off';
      return;
    }
    const context = new Context();
    const analyser = context.createAnalyser();
    analyser.fftSize = 1024;
    context.createMediaStreamSource(new MediaStream([track])).connect(analyser);
    context.resume().catch(() => {});
    const samples = new Float32Array(analyser.fftSize);
    this.context = context;
    this.set('no', 0);
    this.timer = setInterval(() => {
      analyser.getFloatTimeDomainData(samples);
      let sum = 0;
      for (const s of samples) sum += s * s;
      const db = 20 * Math.log10(Math.sqrt(sum / samples.length) || 1e-9);
      const level = Math.max(0, Math.min(1, (db - FLOOR_DB) / RANGE_DB));
      const now = Date.now();
      if (level >= HEARD_LEVEL && track.enabled && track.readyState === 'live') this.lastHeard = now;
      this.set(now - this.lastHeard < QUIET_AFTER_MS ? 'yes' : 'no', level);
    }, SAMPLE_MS);
  }

  set(hearing, level) {
    this.meter.value = level;
    if (this.box.dataset.hearing !== hearing) {
      this.box.dataset.hearing = hearing;
      this.text.textContent = WORDS[hearing];
    }
  }

  stop() {
    clearInterval(this.timer);
    this.timer = null;
    if (this.context) this.context.close().catch(() => {});
    this.context = null;
    this.lastHeard = 0;
    this.meter.value = 0;
  }
}
