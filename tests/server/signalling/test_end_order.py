"""`end` follows the ordering rule of every host command: its effects first, then its `ack`."""

from __future__ import annotations

from tests.support.signalling_scene import Scene


async def test_the_host_reads_consultation_ended_then_ack_then_the_close(scene: Scene) -> None:
    host = await scene.join_host()
    room = await scene.join_room()
    await scene.admitted(host, room)
    await host.sync()
    seen_before = len(host.seen)

    await host.send(type="end", id="end-1", reason="all done")
    code = await host.closed()

    frames = [(m["type"], m.get("ref"), m.get("reason")) for m in host.seen[seen_before:]]
    assert frames == [("consultation.ended", None, "all done"), ("ack", "end-1", None)]
    assert code == 4410
    assert (await room.got("consultation.ended"))["reason"] == "all done"
    assert await room.closed() == 4410


async def test_end_without_an_id_gets_no_ack_and_still_closes(scene: Scene) -> None:
    host = await scene.join_host()
    await host.sync()
    seen_before = len(host.seen)

    await host.send(type="end")
    code = await host.closed()

    assert [m["type"] for m in host.seen[seen_before:]] == ["consultation.ended"]
    assert code == 4410


async def test_admit_follows_the_same_order_for_the_host(scene: Scene) -> None:
    host = await scene.join_host()
    room = await scene.join_room()
    await host.expect("participant.joined")
    await host.sync()
    seen_before = len(host.seen)

    ack = await host.request("admit", participant=room.id)

    assert [m["type"] for m in host.seen[seen_before:]] == ["participant.admitted", "ack"]
    assert ack["type"] == "ack"


async def test_start_follows_the_same_order_for_the_host(scene: Scene) -> None:
    host = await scene.join_host()
    scene.prepare_start()
    await host.sync()
    seen_before = len(host.seen)

    ack = await host.request("start")

    assert [m["type"] for m in host.seen[seen_before:]] == ["consultation.live", "ack"]
    assert ack["type"] == "ack"
