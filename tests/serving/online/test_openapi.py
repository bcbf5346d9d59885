"""The OpenAPI description: what it declares, and that the service's answers conform to it.

The fuzz test in test_service.py checks real answers against it over HTTP; these check, in
process, the answers that fuzzing may not reach.
"""

from __future__ import annotations

import datetime as dt
import json
from importlib.metadata import version
from typing import Any

import jsonschema_rs
import pytest
import schemathesis
from pydantic import ValidationError

from serving.online.openapi import openapi_spec
from serving.online.responses import (
    ErrorBody,
    LookupResponse,
    ModelStatus,
    ScoreResponse,
    Unscored,
    stored_rows,
    utc,
)
from serving.online.schema import ScoreInput
from serving.scoring.columns import CONTRACT_COLUMNS

SPEC = openapi_spec()
API = ("/score", "/lookup", "/status", "/reload")


def conforms(value: Any, component: str) -> None:
    """Raise unless `value` (JSON) matches the spec's component schema, formats included.

    With jsonschema-rs, as schemathesis checks answers: a date-time needs its offset.
    """
    schema = {"$ref": f"#/components/schemas/{component}", "components": SPEC["components"]}
    jsonschema_rs.validator_for(schema, validate_formats=True).validate(value)


def test_a_real_title_version_and_the_bearer_scheme() -> None:
    assert SPEC["info"]["title"] == "Vafa online scoring"
    assert SPEC["info"]["version"] == version("vafa")
    assert SPEC["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": SPEC["components"]["securitySchemes"]["bearer"]["description"],
    }
    assert SPEC["security"] == [{"bearer": []}]
    for path in ("/healthz", "/livez", "/readyz", "/metrics"):
        assert SPEC["paths"][path]["get"]["security"] == []


@pytest.mark.parametrize("path", API)
def test_every_refusal_is_listed(path: str) -> None:
    answers = SPEC["paths"][path]["post"]["responses"]
    assert {"200", "400", "401", "403", "413", "415", "429"} <= set(answers)
    assert ("503" in answers) == (path != "/status")
    assert "Retry-After" in answers["429"]["headers"]


def test_score_rows_are_typed_and_errors_are_lists() -> None:
    row = SPEC["paths"]["/score"]["post"]["responses"]["200"]["content"]["application/json"]
    response = SPEC["components"]["schemas"]["ScoreResponse"]
    assert row["schema"] == {"$ref": "#/components/schemas/ScoreResponse"}
    items = response["properties"]["scores"]["items"]
    assert set(CONTRACT_COLUMNS) <= set(items["required"])
    assert items["properties"]["as_of"] == {
        "format": "date-time",
        "title": "As Of",
        "type": "string",
    }
    assert {"type": "null"} in items["properties"]["churn_probability"]["anyOf"]
    detail = SPEC["components"]["schemas"]["ErrorBody"]["properties"]["detail"]
    assert detail["type"] == "array"
    status = SPEC["components"]["schemas"]["ModelStatus"]["properties"]
    assert {"type": "null"} in status["model_version"]["anyOf"]  # nullable, said so


def test_schemathesis_reads_every_operation() -> None:
    schema = schemathesis.openapi.from_dict(SPEC)
    paths = {result.ok().path for result in schema.get_all_operations()}
    assert set(API) <= paths


def test_answers_that_fuzzing_may_not_reach_conform() -> None:
    answer = ScoreResponse(
        model_version="3",
        as_of=utc(dt.datetime(2026, 11, 1)),
        as_of_from="clock",
        scores=[
            {
                "customer_id": "c1",
                "as_of": "2026-11-01T00:00:00.000Z",
                "churn_probability": None,
                "predicted_spend": 1.5,
                "clv": 2.0,
                "value_at_risk": 0.0,
                "spend_low": 0.0,
                "spend_high": 4.0,
                "clv_low": None,  # a model without ranges
                "clv_high": None,
                "expected_next_order": None,
                "segment": "vip",
                "recommended_action": "no_action",
                "reasons": "",
                "model_version": "3",
                "a_column_added_later": [1, 2],
            }
        ],
        unscored=[Unscored(customer_id="c2", reason="no transaction before as_of")],
    )
    conforms(answer.model_dump(mode="json"), "ScoreResponse")
    assert answer.model_dump(mode="json")["as_of"] == "2026-11-01T00:00:00Z"
    starting = ModelStatus(
        ready=False,
        model_version=None,
        loaded_at=None,
        last_check=dt.datetime.now(dt.UTC),
        registry_error="registry: ConnectionError",
        store_error=None,
    )
    conforms(starting.model_dump(mode="json"), "ModelStatus")
    assert starting.model_dump(mode="json")["last_check"].endswith("Z")
    with pytest.raises(ValidationError) as raised:
        ScoreInput.model_validate_json('{"customers": [{"customer_id": 7, "x": 1}], "y": 2}')
    # As BentoML answers a ValidationError (its http app's 400).
    bad_request = {
        "error": f"{raised.value.error_count()} validation error for {raised.value.title}",
        "detail": raised.value.errors(include_context=False, include_input=False),
    }
    conforms(json.loads(json.dumps(bad_request)), "ErrorBody")
    conforms(ErrorBody(error="scores store unreachable").model_dump(mode="json"), "ErrorBody")
    conforms({"error": "missing or wrong bearer token"}, "ErrorBody")  # the guard's
    with pytest.raises(jsonschema_rs.ValidationError):
        conforms({"error": "x", "detail": "a string"}, "ErrorBody")
    with pytest.raises(jsonschema_rs.ValidationError):
        broken = answer.model_dump(mode="json")
        broken["scores"][0]["as_of"] = "2026-11-01T00:00:00"  # no zone
        conforms(broken, "ScoreResponse")


def test_score_rows_promise_the_ranges_and_lookup_fills_them_in_older_rows() -> None:
    """`clv_low`/`clv_high` (and spend's) are required, nullable; rows stored before get null."""
    items = SPEC["components"]["schemas"]["ScoreResponse"]["properties"]["scores"]["items"]
    for name in ("spend_low", "spend_high", "clv_low", "clv_high"):
        assert name in items["required"]
        assert {"type": "null"} in items["properties"][name]["anyOf"]
    older = {
        "customer_id": "c1",
        "as_of": "2026-11-01T00:00:00.000",
        "churn_probability": 0.5,
        "predicted_spend": 1.5,
        "clv": 2.0,
        "value_at_risk": 1.0,
        "segment": "vip",
        "recommended_action": "no_action",
        "reasons": "",
        "model_version": "3",
    }
    answer = LookupResponse(scores=[dict(older)], unknown=[])
    with pytest.raises(jsonschema_rs.ValidationError, match='_low" is a required property'):
        conforms(answer.model_dump(mode="json"), "LookupResponse")
    answer = LookupResponse(scores=stored_rows([dict(older)]), unknown=[])
    conforms(answer.model_dump(mode="json"), "LookupResponse")
    assert answer.scores[0]["clv_high"] is None and answer.scores[0]["as_of"].endswith("Z")
