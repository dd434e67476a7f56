"""Hostile audit filters in the admin console: token-shaped values, empty values, forged cursors
and huge numbers are refused with a 4xx and a code, never a 500, and never echoed back."""

from __future__ import annotations

import pytest

from tests.server.admin.conftest import Clinic, problem

JWT_SHAPED = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"


@pytest.mark.parametrize(
    "params",
    [
        {"authority": JWT_SHAPED},
        {"user": JWT_SHAPED},
        {"device": JWT_SHAPED},
        {"consultation": JWT_SHAPED},
        {"patient": ""},
        {"user": ""},
        {"action": "x" * 64},
        {"cursor": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"},
        {"cursor": "99999999999999999999999999"},
        {"limit": "256215084247846682624"},
        {"from": "9999-12-31", "to": "9999-12-31"},
    ],
)
def test_a_hostile_filter_is_a_clear_refusal_or_an_empty_page(clinic: Clinic, params: dict[str, str]) -> None:
    answer = clinic.console.get("/admin/api/audit/entries", params=params)
    assert answer.status_code < 500, answer.text
    if answer.status_code >= 400:
        assert problem(answer)["code"]
    for value in params.values():
        if len(value) > 12:
            assert value not in answer.text  # a token typed into a filter is not echoed
    # The same filters on the export.
    exported = clinic.console.get("/admin/api/audit/export", params={**params, "format": "csv"})
    assert exported.status_code < 500, exported.text


def test_a_token_in_place_of_a_patient_is_refused_without_a_500(clinic: Clinic) -> None:
    answer = clinic.console.get(f"/admin/api/audit/patients/{JWT_SHAPED}/accesses")
    assert 400 <= answer.status_code < 500, answer.text
    assert problem(answer)["code"] and JWT_SHAPED not in answer.text
    assert problem(answer)["instance"] == "/admin/api/audit/patients/{patient_ref}/accesses"
