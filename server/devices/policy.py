"""The device policy this server enforces: the shipped one, or the file in ``TELEMED_POLICY_FILE``."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from device_policy.policy import Policy, load_default_policy, load_policy, policy_hash
from server.settings import Settings


@dataclass(frozen=True)
class ActivePolicy:
    """A loaded policy with its hash, computed once."""

    policy: Policy
    hash: str

    @property
    def version(self) -> str:
        """The policy's version string (``2026.11.1``)."""
        return self.policy.version


@functools.cache
def _load(path: Path | None) -> ActivePolicy:
    policy = load_policy(path) if path is not None else load_default_policy()
    return ActivePolicy(policy=policy, hash=policy_hash(policy))


def active_policy(settings: Settings) -> ActivePolicy:
    """The policy reports are evaluated against (each file is read and validated once)."""
    path = settings.policy_file.resolve() if settings.policy_file is not None else None
    return _load(path)
