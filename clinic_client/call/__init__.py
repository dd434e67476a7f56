"""The call itself: WebRTC media with up to two other participants, via aiortc.

The signalling client drives a :class:`Call` through four calls — ``connect_to``,
``handle_remote``, ``remove_participant`` and ``restart_peer`` — and gives it a
:class:`SignallingChannel` to send offers, answers and ICE candidates. See docs/media.md.
"""

from clinic_client.call.call import (
    Call,
    CallEvent,
    ParticipantState,
    ReceivedFrames,
    RecoveryPolicy,
)
from clinic_client.call.errors import (
    CallError,
    CallFull,
    InvalidCallState,
    InvalidSignal,
    NoIceCandidates,
    RecoveryExhausted,
    RelayPolicyViolation,
    RelayUnavailable,
    UnknownParticipant,
)
from clinic_client.call.ice import IceConfig, IcePolicy, IceServer, SelectedPair
from clinic_client.call.media import (
    FrameMarker,
    LocalMedia,
    MediaFileRecorder,
    SyntheticVideoTrack,
    ToneAudioTrack,
    audio_level,
    open_devices,
    open_media,
    read_frame_marker,
    synthetic_media,
)
from clinic_client.call.peer import CallPeer, PeerState
from clinic_client.call.signalling import SignalKind, SignallingChannel
from clinic_client.call.stats import CallStats

__all__ = [
    "Call",
    "CallError",
    "CallEvent",
    "CallFull",
    "CallPeer",
    "CallStats",
    "FrameMarker",
    "IceConfig",
    "IcePolicy",
    "IceServer",
    "InvalidCallState",
    "InvalidSignal",
    "LocalMedia",
    "MediaFileRecorder",
    "NoIceCandidates",
    "RecoveryExhausted",
    "ParticipantState",
    "PeerState",
    "ReceivedFrames",
    "RecoveryPolicy",
    "RelayPolicyViolation",
    "RelayUnavailable",
    "SelectedPair",
    "SignalKind",
    "SignallingChannel",
    "SyntheticVideoTrack",
    "ToneAudioTrack",
    "UnknownParticipant",
    "audio_level",
    "open_devices",
    "open_media",
    "read_frame_marker",
    "synthetic_media",
]
