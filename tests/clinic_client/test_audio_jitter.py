"""The audio jitter buffer: a lost packet costs that packet, not the 16 behind it."""

from __future__ import annotations

import random

from aiortc.jitterbuffer import JitterBuffer
from aiortc.rtp import RtpPacket

from clinic_client.call.jitter import AudioJitterBuffer

SAMPLES_PER_PACKET = 960  # 20 ms of Opus at 48 kHz


def packet(seq: int) -> RtpPacket:
    p = RtpPacket(payload_type=111, sequence_number=seq % 65536, timestamp=seq * SAMPLES_PER_PACKET)
    p._data = seq.to_bytes(4, "big")  # type: ignore[attr-defined]  # what aiortc's depacketizer sets
    return p


def played(buffer: JitterBuffer, *, sent: int, loss: float, seed: int = 7) -> list[int]:
    """Packet numbers the buffer hands to the decoder, with seeded random loss."""
    rng = random.Random(seed)
    out: list[int] = []
    for seq in range(sent):
        if rng.random() < loss:
            continue
        _, frame = buffer.add(packet(seq))
        if frame is not None:
            out.append(int.from_bytes(frame.data, "big"))
    return out


def test_ten_percent_loss_loses_about_ten_percent_of_the_audio_in_order() -> None:
    out = played(AudioJitterBuffer(), sent=70_000, loss=0.10)  # crosses the 16-bit wrap
    assert out == sorted(out) and len(set(out)) == len(out)
    assert len(out) >= 0.85 * 70_000
    # aiortc's own buffer waits at every hole until it overflows, and then drops what did arrive.
    assert len(played(JitterBuffer(capacity=16, prefetch=4), sent=70_000, loss=0.10)) < 0.7 * 70_000


def test_a_hole_is_skipped_once_four_packets_wait_behind_it() -> None:
    buffer = AudioJitterBuffer()
    got = [buffer.add(packet(seq))[1] for seq in (0, 1, 2, 3, 4, 6, 7, 8, 9, 10)]
    frames = [int.from_bytes(f.data, "big") for f in got if f is not None]
    assert frames == [0, 1, 2, 3, 4, 6]  # packet 5 is given up once 6-10 wait behind it
    assert buffer.add(packet(5))[1] is None  # too late: never played out of order


def test_without_loss_it_plays_every_packet_four_behind() -> None:
    out = played(AudioJitterBuffer(), sent=100, loss=0.0)
    assert out == list(range(96))  # packet n plays when n + 4 has arrived, as in aiortc
