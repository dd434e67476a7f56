"""Fixtures for the device tests: the real Redis, with a key prefix of the test's own."""

from tests.support.signalling_scene import redis_overrides  # noqa: F401 - fixture
