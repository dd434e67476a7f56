"""Load a policy from YAML, report every problem by rule id and field, and hash it.

The hash is taken over the canonical JSON of the *parsed* policy (defaults filled in,
platforms and device kinds sorted), so reformatting the YAML, reordering keys or adding
comments leaves it unchanged while any change of meaning changes it.
"""

from __future__ import annotations

import functools
import os
from importlib import resources
from typing import Any

import yaml
from pydantic import ValidationError

from device_policy.canonical import canonical_sha256
from device_policy.errors import PolicyInvalid
from device_policy.policy.model import Policy

DEFAULT_POLICY_RESOURCE = "default.yaml"
_MAX_POLICY_BYTES = 1024 * 1024


def parse_policy(text: str | bytes, *, source: str = "<policy>") -> Policy:
    """Parse and validate policy YAML; raise PolicyInvalid naming each bad rule and field."""
    if len(text) > _MAX_POLICY_BYTES:
        raise PolicyInvalid(
            f"Policy {source} is larger than {_MAX_POLICY_BYTES} bytes",
            problems=["file too large"],
        )
    try:
        raw = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise PolicyInvalid(f"Policy {source} is not valid YAML", problems=[str(exc)]) from None
    try:
        return Policy.model_validate(raw)
    except ValidationError as exc:
        problems = describe_errors(exc, raw)
        raise PolicyInvalid(
            f"Policy {source} is not valid: " + "; ".join(problems), problems=problems
        ) from None


def load_policy(path: str | os.PathLike[str]) -> Policy:
    """Read and validate a policy file."""
    with open(path, "rb") as handle:
        text = handle.read(_MAX_POLICY_BYTES + 1)
    return parse_policy(text, source=os.fspath(path))


@functools.cache
def load_default_policy() -> Policy:
    """The policy shipped with the package (``device_policy/policies/default.yaml``)."""
    resource = resources.files("device_policy.policies").joinpath(DEFAULT_POLICY_RESOURCE)
    return parse_policy(resource.read_bytes(), source=f"device_policy/policies/{resource.name}")


def policy_hash(policy: Policy) -> str:
    """SHA-256 (hex) of the canonical JSON of the parsed policy."""
    return canonical_sha256(policy.model_dump(mode="json"))


def describe_errors(exc: ValidationError, raw: Any) -> list[str]:
    """Turn pydantic errors into lines like ``rule "sim-pin-lock" field "operand": …``."""
    problems: list[str] = []
    for error in exc.errors(include_url=False, include_input=False):
        loc = error["loc"]
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown key"
        if error["type"] == "duplicate_rule_id":
            rule_id = str((error.get("ctx") or {}).get("rule_id", "?"))
            problems.append(f'rule "{rule_id}" field "id": {message}')
            continue
        if len(loc) >= 2 and loc[0] == "rules" and isinstance(loc[1], int):
            where = f'rule "{_rule_id(raw, loc[1])}"'
            field = ".".join(str(part) for part in loc[2:])
            problems.append(f'{where} field "{field}": {message}' if field else f"{where}: {message}")
        elif loc:
            problems.append(f'field "{".".join(str(part) for part in loc)}": {message}')
        else:
            problems.append(f"policy: {message}")
    return problems


def _rule_id(raw: Any, index: int) -> str:
    try:
        rule_id = raw["rules"][index]["id"]
    except (KeyError, IndexError, TypeError):
        rule_id = None
    return rule_id if isinstance(rule_id, str) else f"#{index + 1}"


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key written twice in one mapping (PyYAML keeps the last)."""


def _construct_unique_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _value_node in node.value:
        key = loader.construct_object(key_node)
        if not isinstance(key, str | int | float | bool) or key is None:
            continue  # construct_mapping below reports unhashable keys in its own words
        if key in seen:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping",
                node.start_mark,
                f"found duplicate key {key!r}",
                key_node.start_mark,
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=True)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping)
