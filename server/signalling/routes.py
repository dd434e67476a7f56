"""The signalling endpoint: one WebSocket per participant at ``/ws/v1/signalling``.

No token travels in the URL: the first message on the socket (``hello``) authenticates.
See docs/protocol.md.
"""

from __future__ import annotations

from fastapi import APIRouter, WebSocket

from server.services import Services
from server.signalling.protocol import CloseCode

router = APIRouter(tags=["signalling"])

SIGNALLING_PATH = "/ws/v1/signalling"


@router.websocket(SIGNALLING_PATH)
async def signalling(websocket: WebSocket) -> None:
    """Signalling socket: ``hello`` first, then waiting room, offers/answers/ICE (docs/protocol.md)."""
    services: Services = websocket.app.state.services
    if services.hub is None:
        await websocket.close(CloseCode.TRY_AGAIN_LATER, "signalling is not enabled")
        return
    await services.hub.serve(websocket)
