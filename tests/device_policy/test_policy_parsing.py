"""Loading policy YAML: every mistake is refused with the rule id and field it concerns."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from device_policy.errors import PolicyInvalid
from device_policy.policy import (
    DeviceKind,
    Operator,
    Severity,
    load_default_policy,
    load_policy,
    parse_policy,
    policy_hash,
)

HEADER = """\
version: "2026.11.1"
id: test-policy
description: A policy for tests.
rules:
"""

RULE = """\
  - id: {rule_id}
    title: Root disk encrypted
    severity: block
    platforms: [linux]
    fact: disk.root_encrypted
    operator: is_true
    remediation: "Encrypt the disk (encrypted: {{actual}})"
"""


def policy_text(*rules: str) -> str:
    return HEADER + "".join(textwrap.indent(textwrap.dedent(rule), "  ") for rule in rules)


def one_rule(**fields: object) -> str:
    values: dict[str, object] = {
        "id": "r1",
        "title": "A rule",
        "severity": "block",
        "platforms": "[any]",
        "fact": "screen_lock.idle_delay_s",
        "operator": "lte",
        "operand": "300",
        "remediation": '"Lock sooner (now {actual} s)"',
    }
    values.update(fields)
    lines = [f"{key}: {value}" for key, value in values.items() if value is not None]
    return "- " + "\n  ".join(lines) + "\n"


def problems_of(text: str) -> list[str]:
    with pytest.raises(PolicyInvalid) as caught:
        parse_policy(text)
    assert caught.value.code == "policy_invalid"
    return caught.value.problems


def test_a_valid_policy_parses_with_its_fields() -> None:
    policy = parse_policy(policy_text(one_rule()))

    assert policy.version == "2026.11.1"
    assert policy.id == "test-policy"
    rule = policy.rules[0]
    assert (rule.id, rule.severity, rule.operator, rule.operand) == (
        "r1",
        Severity.BLOCK,
        Operator.LTE,
        300,
    )
    assert rule.platforms == ("any",)
    assert rule.device_kinds == (DeviceKind.PRISON_LAPTOP, DeviceKind.ROOM_ENDPOINT)


def test_unknown_key_in_a_rule_names_the_rule_and_the_key() -> None:
    problems = problems_of(policy_text(one_rule(colour="red")))

    assert problems == ['rule "r1" field "colour": unknown key']


def test_unknown_top_level_key_is_refused() -> None:
    problems = problems_of("owner: me\n" + policy_text(one_rule()))

    assert problems == ['field "owner": unknown key']


def test_duplicate_rule_ids_are_refused() -> None:
    problems = problems_of(policy_text(one_rule(), one_rule(title="Again")))

    assert problems == ['rule "r1" field "id": duplicate rule id (rules #1 and #2)']


def test_a_key_written_twice_in_yaml_is_refused_not_silently_overwritten() -> None:
    text = policy_text(one_rule()).replace("operand: 300", "operand: 300\n    operand: 900")

    problems = problems_of(text)

    assert "found duplicate key 'operand'" in problems[0]


@pytest.mark.parametrize(
    ("operator", "operand", "message"),
    [
        ("gte", '"300"', 'operator "gte" needs a finite number, not a string'),
        ("lte", "true", 'operator "lte" needs a finite number, not a boolean'),
        ("lte", ".nan", 'operator "lte" needs a finite number, not a number'),
        ("is_true", "true", 'operator "is_true" takes no operand'),
        ("is_false", "[sim]", 'operator "is_false" takes no operand'),
        ("eq", "[a, b]", 'operator "eq" needs a string, number or boolean, not a list'),
        ("ne", None, 'operator "ne" needs a string, number or boolean, not a null'),
        (
            "contains",
            "{a: 1}",
            'operator "contains" needs a string, number or boolean, not a object',
        ),
        ("in", "[]", 'operator "in" needs a non-empty list, not a list'),
        ("not_in", "sim", 'operator "not_in" needs a non-empty list, not a string'),
        ("in", "[a, 1]", 'operator "in" needs list values all of one kind'),
        ("in", "[[a]]", 'operator "in" needs a string, number or boolean, not a list'),
        (
            "version_gte",
            "twelve",
            'operator "version_gte" needs a dotted version string like "12.4"',
        ),
        ("version_gte", "12", 'operator "version_gte" needs a dotted version string like "12.4"'),
        (
            "matches_enrolled",
            "enrolled.serial",
            'operator "matches_enrolled" needs one of enrolled.iccid, enrolled.imei, enrolled.imsi',
        ),
    ],
)
def test_operand_must_fit_the_operator(operator: str, operand: str | None, message: str) -> None:
    problems = problems_of(policy_text(one_rule(operator=operator, operand=operand)))

    assert problems == [f'rule "r1" field "operand": {message}']


def test_unknown_operator_names_the_field() -> None:
    problems = problems_of(policy_text(one_rule(operator="approximately")))

    assert len(problems) == 1
    assert problems[0].startswith('rule "r1" field "operator": Input should be ')


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("severity", "fatal", "rule \"r1\" field \"severity\": Input should be 'block' or 'warn'"),
        ("platforms", "[any, linux]", 'rule "r1" field "platforms": "any" already covers every'),
        ("platforms", "[]", 'rule "r1" field "platforms": list at least one platform'),
        ("device_kinds", "[]", 'rule "r1" field "device_kinds": list at least one device kind'),
        ("platforms", "[macos]", 'rule "r1" field "platforms.0": Input should be'),
        ("device_kinds", "[toaster]", 'rule "r1" field "device_kinds.0": Input should be'),
        ("fact", '"Disk Root"', 'rule "r1" field "fact": String should match pattern'),
        ("title", '""', 'rule "r1" field "title": String should have at least 1 character'),
    ],
)
def test_bad_field_values_name_rule_and_field(field: str, value: str, expected: str) -> None:
    problems = problems_of(policy_text(one_rule(**{field: value})))

    assert len(problems) == 1
    assert problems[0].startswith(expected)


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ('"Now {actual.__class__}"', 'unknown placeholder "{actual.__class__}"'),
        ('"Now {0}"', 'unknown placeholder "{0}"'),
        ('"Now {}"', 'unknown placeholder "{}"'),
        ('"Now {secret_key}"', 'unknown placeholder "{secret_key}"'),
        ('"Now {actual!r}"', 'placeholder "{actual}" takes no format spec or conversion'),
        ('"Now {actual:>99}"', 'placeholder "{actual}" takes no format spec or conversion'),
        ('"Now {actual"', "remediation template does not parse"),
    ],
)
def test_remediation_templates_take_only_plain_known_placeholders(template: str, message: str) -> None:
    problems = problems_of(policy_text(one_rule(remediation=template)))

    assert len(problems) == 1
    assert problems[0].startswith('rule "r1" field "remediation": ')
    assert message in problems[0]


def test_a_rule_without_an_id_is_named_by_position() -> None:
    problems = problems_of(policy_text(one_rule(), one_rule(id=None, title="Second")))

    assert problems == ['rule "#2" field "id": Field required']


def test_every_problem_is_reported_at_once() -> None:
    text = policy_text(one_rule(severity="fatal"), one_rule(id="r2", operand='"x"'))

    problems = problems_of(text)

    assert [p.split(":")[0] for p in problems] == [
        'rule "r1" field "severity"',
        'rule "r2" field "operand"',
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("rules: [unclosed", "not valid YAML"),
        ("- just\n- a list\n", "Input should be a valid dictionary"),
        (HEADER.replace('"2026.11.1"', "2026.11"), 'field "version"'),
        (HEADER + "  []\n", 'field "rules"'),
    ],
)
def test_documents_that_are_not_policies_are_refused(text: str, expected: str) -> None:
    with pytest.raises(PolicyInvalid) as caught:
        parse_policy(text)

    assert expected in str(caught.value)


def test_load_policy_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(policy_text(one_rule()), encoding="utf-8")

    assert load_policy(path) == parse_policy(policy_text(one_rule()))


def test_load_policy_names_the_file_in_errors(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(policy_text(one_rule(colour="red")), encoding="utf-8")

    with pytest.raises(PolicyInvalid, match="broken.yaml"):
        load_policy(path)


# --- hash --------------------------------------------------------------------------------

REFORMATTED = """\
# the same policy, written differently
id: 'test-policy'
rules:
- {remediation: "Lock sooner (now {actual} s)", operand: 300.0, operator: lte,
   fact: screen_lock.idle_delay_s, platforms: [any], severity: block, title: A rule,
   id: r1, device_kinds: [room_endpoint, prison_laptop]}
description: >-
  A policy
  for tests.
version: '2026.11.1'
"""


def test_hash_ignores_formatting_key_order_comments_and_spelled_out_defaults() -> None:
    original = parse_policy(policy_text(one_rule()))

    assert policy_hash(parse_policy(REFORMATTED)) == policy_hash(original)


def test_hash_changes_when_an_operand_changes() -> None:
    original = parse_policy(policy_text(one_rule()))
    changed = parse_policy(policy_text(one_rule(operand="600")))

    assert policy_hash(changed) != policy_hash(original)


@pytest.mark.parametrize(
    "change",
    [{"severity": "warn"}, {"platforms": "[linux]"}, {"device_kinds": "[room_endpoint]"}],
)
def test_hash_changes_with_any_change_of_meaning(change: dict[str, str]) -> None:
    original = parse_policy(policy_text(one_rule()))

    assert policy_hash(parse_policy(policy_text(one_rule(**change)))) != policy_hash(original)


def test_hash_does_not_depend_on_platform_order() -> None:
    first = parse_policy(policy_text(one_rule(platforms="[linux, windows]")))
    second = parse_policy(policy_text(one_rule(platforms="[windows, linux, windows]")))

    assert policy_hash(first) == policy_hash(second)


def test_hash_is_sha256_hex_of_the_canonical_policy() -> None:
    digest = policy_hash(load_default_policy())

    assert len(digest) == 64
    assert set(digest) <= set("0123456789abcdef")


def test_shipped_default_policy_loads_from_package_data() -> None:
    policy = load_default_policy()
    shipped = Path(__file__).parents[2] / "device_policy" / "policies" / "default.yaml"

    assert policy.id == "telemed-default"
    assert policy.version == "2026.11.1"
    assert policy_hash(policy) == policy_hash(load_policy(shipped))
