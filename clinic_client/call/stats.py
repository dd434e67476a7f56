"""Call quality figures per remote participant, derived from aiortc's ``getStats()``.

Definitions (see docs/media.md):

- ``rtt_ms``: round-trip time from RTCP receiver reports about what we send (the mean over
  our outgoing streams that have one); None until the first report with timing arrives.
- ``jitter_ms``: interarrival jitter of what we receive (RFC 3550), converted from RTP
  clock units with each stream's clock rate (90 kHz video, the audio codec's rate); the
  worst inbound stream.
- ``packet_loss_pct``: inbound packets lost / (received + lost) since the previous
  sample (since the peer connection started for the first sample); None with no packets.
- ``bitrate_in_kbps`` / ``bitrate_out_kbps``: bytes received / sent on the transport
  (SRTP + RTCP + DTLS, i.e. what the network carries) since the previous sample.
- ``video_frames_received`` / ``audio_frames_received``: decoded frames handed to us for
  this participant since they joined, across peer-connection restarts.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiortc.stats import (
    RTCInboundRtpStreamStats,
    RTCRemoteInboundRtpStreamStats,
    RTCTransportStats,
)

VIDEO_CLOCK_RATE = 90_000
DEFAULT_AUDIO_CLOCK_RATE = 48_000


@dataclass(frozen=True)
class CallStats:
    """Quality of the media exchanged with one remote participant."""

    participant_id: str
    state: str
    connection_id: str | None
    rtt_ms: float | None
    jitter_ms: float | None
    packet_loss_pct: float | None
    bitrate_in_kbps: float | None
    bitrate_out_kbps: float | None
    video_frames_received: int
    audio_frames_received: int
    local_candidate_type: str | None
    remote_candidate_type: str | None

    @property
    def frames_received(self) -> int:
        """Video frames received (the figure tests and UIs usually want)."""
        return self.video_frames_received


@dataclass(frozen=True)
class StatsSample:
    """Counters at one instant, kept to compute rates at the next sample."""

    at: float
    bytes_received: int
    bytes_sent: int
    packets_received: int
    packets_lost: int


@dataclass(frozen=True)
class TransportFigures:
    """What :func:`summarize` extracts from one aiortc stats report."""

    rtt_ms: float | None
    jitter_ms: float | None
    packet_loss_pct: float | None
    bitrate_in_kbps: float | None
    bitrate_out_kbps: float | None
    sample: StatsSample


def bytes_received(report: Mapping[str, Any]) -> int:
    """Total bytes received on all transports in a report (for stall detection)."""
    return sum(s.bytesReceived for s in report.values() if isinstance(s, RTCTransportStats))


def summarize(
    report: Mapping[str, Any],
    *,
    previous: StatsSample | None,
    started_at: float,
    clock_rates: Mapping[str, int],
    now: float | None = None,
) -> TransportFigures:
    """Turn an aiortc stats report into the figures of :class:`CallStats`."""
    now = time.monotonic() if now is None else now
    transports = {s.id: s for s in report.values() if isinstance(s, RTCTransportStats)}
    inbound = [s for s in report.values() if isinstance(s, RTCInboundRtpStreamStats)]
    remote_inbound = [s for s in report.values() if isinstance(s, RTCRemoteInboundRtpStreamStats)]

    rtts = [s.roundTripTime * 1000 for s in remote_inbound if s.roundTripTime is not None]
    rtt_ms = sum(rtts) / len(rtts) if rtts else None

    jitters = []
    for stream in inbound:
        rate = clock_rates.get(stream.kind) or (
            VIDEO_CLOCK_RATE if stream.kind == "video" else DEFAULT_AUDIO_CLOCK_RATE
        )
        jitters.append(stream.jitter * 1000 / rate)
    jitter_ms = max(jitters) if jitters else None

    sample = StatsSample(
        at=now,
        bytes_received=sum(t.bytesReceived for t in transports.values()),
        bytes_sent=sum(t.bytesSent for t in transports.values()),
        packets_received=sum(s.packetsReceived for s in inbound),
        packets_lost=sum(max(0, s.packetsLost) for s in inbound),
    )
    base = previous or StatsSample(
        at=started_at, bytes_received=0, bytes_sent=0, packets_received=0, packets_lost=0
    )
    # Counters restart with a new peer connection; never report a negative rate.
    if sample.bytes_received < base.bytes_received or sample.bytes_sent < base.bytes_sent:
        base = StatsSample(at=started_at, bytes_received=0, bytes_sent=0, packets_received=0, packets_lost=0)
    elapsed = sample.at - base.at
    bitrate_in = bitrate_out = None
    if elapsed > 0:
        bitrate_in = (sample.bytes_received - base.bytes_received) * 8 / elapsed / 1000
        bitrate_out = (sample.bytes_sent - base.bytes_sent) * 8 / elapsed / 1000

    received = max(0, sample.packets_received - base.packets_received)
    lost = max(0, sample.packets_lost - base.packets_lost)
    loss_pct = lost * 100 / (received + lost) if received + lost else None

    return TransportFigures(
        rtt_ms=rtt_ms,
        jitter_ms=jitter_ms,
        packet_loss_pct=loss_pct,
        bitrate_in_kbps=bitrate_in,
        bitrate_out_kbps=bitrate_out,
        sample=sample,
    )
