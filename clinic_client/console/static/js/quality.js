// Call quality from getStats(), in plain words: good / poor / bad, with the delay and the
// share of packets lost over the last sample. Thresholds as the specialist's page (docs/web.md).

export const POOR_RTT_MS = 300;
export const POOR_LOSS_PCT = 2;
export const BAD_RTT_MS = 600;
export const BAD_LOSS_PCT = 8;

const WORDS = { good: 'Good connection', poor: 'Poor connection', bad: 'Bad connection' };

/** good | poor | bad from a round-trip time (ms, or null) and a loss percentage. */
export function levelOf(rttMs, lossPct) {
  if ((rttMs !== null && rttMs > BAD_RTT_MS) || lossPct > BAD_LOSS_PCT) return 'bad';
  if ((rttMs !== null && rttMs > POOR_RTT_MS) || lossPct > POOR_LOSS_PCT) return 'poor';
  return 'good';
}

/** "Good connection · delay 42 ms · 0.0% lost". */
export function describe({ level, rttMs, lossPct }) {
  const parts = [WORDS[level]];
  if (rttMs !== null) parts.push(`delay ${Math.round(rttMs)} ms`);
  parts.push(`${lossPct < 10 ? lossPct.toFixed(1) : Math.round(lossPct)}% lost`);
  return parts.join(' · ');
}

/** Samples one RTCPeerConnection; each call compares with the previous one. */
export class QualityMeter {
  constructor() {
    this.previous = null;
  }

  /** The quality since the last sample, or null when the connection is not up. */
  async sample(pc) {
    if (!pc || pc.connectionState !== 'connected') {
      this.previous = null;
      return null;
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
    const previous = this.previous && this.previous.pc === pc ? this.previous : { lost: 0, received: 0 };
    const dLost = Math.max(0, lost - previous.lost);
    const dReceived = Math.max(0, received - previous.received);
    this.previous = { pc, lost, received };
    const lossPct = dLost + dReceived > 0 ? (100 * dLost) / (dLost + dReceived) : 0;
    const level = levelOf(rttMs, lossPct);
    return { level, rttMs, lossPct, text: describe({ level, rttMs, lossPct }) };
  }
}
