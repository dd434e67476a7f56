"""Settings the server refuses at start rather than fail on later: bounds of the edge settings."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from tests.conftest import make_settings


@pytest.mark.parametrize("ttl", [timedelta(seconds=4), timedelta(days=1, seconds=1), timedelta(0)])
def test_turn_ttl_outside_its_bounds_is_refused_at_start(tmp_path: Path, ttl: timedelta) -> None:
    with pytest.raises(ValidationError, match="turn_ttl"):
        make_settings("sqlite://", tmp_path, turn_ttl=ttl)


@pytest.mark.parametrize("ttl", [timedelta(seconds=5), timedelta(hours=1), timedelta(days=1)])
def test_turn_ttl_within_its_bounds_is_kept(tmp_path: Path, ttl: timedelta) -> None:
    assert make_settings("sqlite://", tmp_path, turn_ttl=ttl).turn_ttl == ttl
