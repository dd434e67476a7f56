"""Running several collectors at once and assembling one complete fact set.

A collector that raises (a bug, not a tool failure — those are already ``unknown``)
costs only its own facts: they become ``unknown`` and the error is logged. Every known
fact name is present in the result, in the documented order.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass

from device_policy.collectors.judge import unknown, unknown_all
from device_policy.collectors.names import FACT_NAMES
from device_policy.facts import Fact, FactSet

log = logging.getLogger("telemed.device_policy.collectors")


@dataclass(frozen=True)
class Job:
    """One collector to run: a label for logs, the facts it owes, and the work itself."""

    label: str
    names: tuple[str, ...]
    work: Awaitable[list[Fact]]


async def _guarded(job: Job) -> list[Fact]:
    try:
        facts = await job.work
    except Exception as exc:
        log.exception("%s collector failed", job.label)
        return unknown_all(job.names, f"{job.label} collector failed ({type(exc).__name__})")
    missing = [name for name in job.names if name not in {fact.name for fact in facts}]
    return facts + unknown_all(missing, f"{job.label} collector reported nothing")


async def gather_facts(jobs: Sequence[Job]) -> FactSet:
    """Run ``jobs`` concurrently; the result names every fact in :data:`FACT_NAMES`."""
    batches = await asyncio.gather(*(_guarded(job) for job in jobs))
    found: dict[str, Fact] = {fact.name: fact for batch in batches for fact in batch}
    facts: FactSet = {
        name: found.get(name) or unknown(name, "not collected on this platform") for name in FACT_NAMES
    }
    facts.update({name: fact for name, fact in found.items() if name not in facts})
    return facts
