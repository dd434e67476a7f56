"""Operating system identity on Linux: ``ID`` and ``VERSION_ID`` from os-release(5).

``/etc/os-release`` is read, falling back to ``/usr/lib/os-release`` as the spec says.
Rolling and testing releases (Debian sid, Arch) carry no ``VERSION_ID``; then
``BUILD_ID`` or ``VERSION_CODENAME`` stands in and the detail says so.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from device_policy.collectors.errors import UnparsableOutput
from device_policy.collectors.files import FileReader, read_text
from device_policy.collectors.judge import judged, unknown
from device_policy.collectors.names import OS_ID, OS_VERSION
from device_policy.collectors.text import clean_text
from device_policy.facts import Fact

OS_RELEASE_PATHS = ("/etc/os-release", "/usr/lib/os-release")


@dataclass(frozen=True)
class OsRelease:
    """What ``parse("os-release", …)`` returns."""

    id: str | None
    version_id: str | None
    version_codename: str | None
    build_id: str | None
    pretty_name: str | None
    id_like: tuple[str, ...]


def parse_os_release(text: str | bytes) -> OsRelease:
    """Parse os-release: ``KEY=value`` lines with shell quoting."""
    values: dict[str, str] = {}
    for line in clean_text(text).splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, raw = line.partition("=")
        try:
            words = shlex.split(raw)
        except ValueError:
            continue
        values[key.strip()] = " ".join(words)
    if not values:
        raise UnparsableOutput("os-release", "no KEY=value lines")
    return OsRelease(
        id=values.get("ID") or None,
        version_id=values.get("VERSION_ID") or None,
        version_codename=values.get("VERSION_CODENAME") or None,
        build_id=values.get("BUILD_ID") or None,
        pretty_name=values.get("PRETTY_NAME") or None,
        id_like=tuple(values.get("ID_LIKE", "").split()),
    )


def read_os_release(files: FileReader) -> OsRelease | str:
    """The first readable os-release file, parsed, or why there is none."""
    reasons = []
    for path in OS_RELEASE_PATHS:
        try:
            return parse_os_release(read_text(files, path))
        except OSError as exc:
            reasons.append(f"{path}: {exc.strerror or type(exc).__name__}")
        except UnparsableOutput as exc:
            reasons.append(f"{path}: {exc.reason}")
    return "cannot read os-release (" + "; ".join(reasons) + ")"


async def collect_os_release(files: FileReader) -> list[Fact]:
    """Facts ``os.id`` and ``os.version``."""
    release = read_os_release(files)
    if isinstance(release, str):
        return [
            unknown(OS_ID, release, source="os-release"),
            unknown(OS_VERSION, release, source="os-release"),
        ]
    facts = [
        judged(OS_ID, release.id, True, source="os-release", detail=release.pretty_name)
        if release.id
        else unknown(OS_ID, "os-release has no ID", source="os-release")
    ]
    if release.version_id:
        facts.append(judged(OS_VERSION, release.version_id, True, source="os-release"))
    elif release.build_id or release.version_codename:
        stand_in = release.build_id or release.version_codename
        field = "BUILD_ID" if release.build_id else "VERSION_CODENAME"
        facts.append(
            judged(
                OS_VERSION,
                stand_in,
                True,
                source="os-release",
                detail=f"no VERSION_ID (rolling or testing release); {field} used",
            )
        )
    else:
        facts.append(unknown(OS_VERSION, "os-release has no VERSION_ID", source="os-release"))
    return facts
