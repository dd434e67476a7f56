"""Fixtures for the clinic client's tests against a running server (tests/support/signalling_scene.py)."""

from tests.support.signalling_scene import (  # noqa: F401 - fixtures
    make_scene,
    migrated_template,
    redis_overrides,
    scene,
    scene_db_url,
)
