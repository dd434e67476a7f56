"""The URL a device's WebSocket request proof must name (docs/protocol.md, Posture during a call)."""

from __future__ import annotations

from typing import Any

import pytest
from jose import jwt as jose_jwt
from websockets.asyncio.client import connect

from device_policy.proof import sign_request_proof
from server.db import utcnow
from server.signalling.routes import SIGNALLING_PATH
from tests.support.signalling_scene import TIMEOUT, Peer, Scene


def room_hello(scene: Scene, url: str) -> tuple[str, dict[str, Any]]:
    join = scene.room_token()
    posture = scene.posture_token(scene.room)
    proof = sign_request_proof(
        scene.room.key,
        method="WS",
        url=url,
        token_jti=jose_jwt.get_unverified_claims(posture)["jti"],
        iat=utcnow(),
        nonce=jose_jwt.get_unverified_claims(join)["jti"],
    )
    return join, {"posture_token": posture, "posture_proof": proof}


async def test_the_proof_names_the_socket_url_as_the_client_dialled_it(scene: Scene) -> None:
    port = scene.nodes[0].port
    join, posture = room_hello(scene, f"ws://127.0.0.1:{port}{SIGNALLING_PATH}")

    peer = await scene.join(join, **posture)

    assert peer.welcome["type"] == "welcome"


@pytest.mark.parametrize(
    "template",
    [
        "http://127.0.0.1:{port}" + SIGNALLING_PATH,  # the HTTP scheme, not ws
        "wss://127.0.0.1:{port}" + SIGNALLING_PATH,  # not the scheme the server saw
        "ws://localhost:{port}" + SIGNALLING_PATH,  # another spelling of the host
        "ws://127.0.0.1:{port}/ws/v1/signalling/",  # another path
    ],
)
async def test_any_other_url_is_refused(scene: Scene, template: str) -> None:
    join, posture = room_hello(scene, template.format(port=scene.nodes[0].port))

    peer = await scene.connect()
    await peer.send(type="hello", join_token=join, **posture)

    error = await peer.expect("error")
    assert error["code"] == "posture_refused"
    assert error["message"].startswith("invalid_proof")
    assert await peer.closed() == 4403


async def test_behind_a_tls_proxy_the_url_is_wss_with_the_host_header(scene: Scene) -> None:
    # A proxy on a trusted address (FORWARDED_ALLOW_IPS, 127.0.0.1 by default) terminates
    # TLS, keeps the Host header and says X-Forwarded-Proto: https.
    join, posture = room_hello(scene, f"wss://telemed.example.org{SIGNALLING_PATH}")
    ws = await connect(
        f"ws://telemed.example.org{SIGNALLING_PATH}",  # the Host header the proxy passes on
        host="127.0.0.1",
        port=scene.nodes[0].port,
        additional_headers={"X-Forwarded-Proto": "https"},
        open_timeout=TIMEOUT,
    )
    peer = Peer(ws)
    await peer.send(type="hello", join_token=join, **posture)

    welcome = await peer.recv()

    assert welcome["type"] == "welcome", welcome
    await peer.close()
