"""Fixtures for the hub tests: a server (or several) per test with a booked consultation."""

from tests.support.signalling_scene import (  # noqa: F401 - fixtures
    make_scene,
    migrated_template,
    redis_overrides,
    scene,
    scene_db_url,
)
