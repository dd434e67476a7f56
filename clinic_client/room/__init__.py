"""The room endpoint's agent behind the patient's full-screen page (docs/room.md).

The page in the room's kiosk browser talks only to this agent on 127.0.0.1, as the console's
page does to the laptop agent (and through the same guard): the agent holds the device key,
the posture and join tokens, finds the consultation booked for the room, joins it and follows
it; the page shows one state at a time and carries the media. Modules: ``state`` (what the
screen shows), ``agent`` (booking, joining, following), ``link`` (the page's socket), ``app``
(the routes), ``browser`` (Chromium in kiosk mode), ``cli`` (``telemed-client room --kiosk``).
"""

from clinic_client.room.agent import RoomAgent
from clinic_client.room.app import create_room_app, room_gate
from clinic_client.room.state import RoomState, Roster, screen_of

__all__ = ["RoomAgent", "RoomState", "Roster", "create_room_app", "room_gate", "screen_of"]
