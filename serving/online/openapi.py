"""The service's OpenAPI description, true to its answers (checked by the fuzz test).

Built from the request and response models rather than taken from BentoML, whose description
lost every null, declared error details as text and listed no authentication.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from serving.online.responses import ErrorBody, LookupResponse, ModelStatus, ScoreResponse
from serving.online.schema import LookupRequest, ScoreRequest

OPENAPI_VERSION = "3.1.0"
REF = "#/components/schemas/{model}"
TITLE = "Vafa online scoring"
DESCRIPTION = (
    "Churn risk, value, reasons and next best action for the customer a CRM has open. "
    "`/score` scores customers from their own rows (the contract's tables); `/lookup` returns "
    "the nightly scores. With a token configured, every call but the health checks, "
    "`/metrics` and this description needs `Authorization: Bearer <token>`; after too many "
    "wrong tokens a client gets 429 with Retry-After. Bad input gets 400 naming each field."
)
ERRORS = {
    400: "The body breaks the contract: `detail` names each field (`loc`) and what is wrong.",
    401: "Missing or wrong bearer token.",
    403: "No token is configured and the client is not on this machine (or came via a proxy).",
    413: "The body is over the service's limit (`VAFA_MAX_REQUEST_BYTES`).",
    415: "The body is not JSON (`Content-Type: application/json`).",
    429: "Too many wrong tokens from this client: wait `Retry-After` seconds.",
}
UNAVAILABLE = {
    "/score": "No model loaded yet (see `/readyz`), or scoring took too long.",
    "/lookup": "The scores store cannot be reached or holds data it cannot read.",
    "/reload": "The registry check failed or did not end within `VAFA_RELOAD_WAIT_SECONDS`.",
}


def package_version() -> str:
    """The installed `vafa` package's version."""
    try:
        return version("vafa")
    except PackageNotFoundError:  # run from a tree that was never installed
        return "0+unknown"


def openapi_spec() -> dict[str, Any]:
    """The OpenAPI 3.1 description of every route the service answers."""
    models: list[tuple[type[BaseModel], Any]] = [
        (ScoreRequest, "validation"),
        (LookupRequest, "validation"),
        (ScoreResponse, "serialization"),
        (LookupResponse, "serialization"),
        (ModelStatus, "serialization"),
        (ErrorBody, "serialization"),
    ]
    refs, top = models_json_schema(models, ref_template=REF)
    schemas = top.get("$defs", {})

    def ref(model: type[BaseModel], mode: str) -> dict[str, Any]:
        return refs[(model, mode)]  # type: ignore[index]

    def json_body(schema: dict[str, Any], description: str) -> dict[str, Any]:
        return {"description": description, "content": {"application/json": {"schema": schema}}}

    def errors(path: str) -> dict[str, Any]:
        error = ref(ErrorBody, "serialization")
        answers = {str(code): json_body(error, text) for code, text in ERRORS.items()}
        answers["401"]["headers"] = {"WWW-Authenticate": {"schema": {"type": "string"}}}
        answers["429"]["headers"] = {"Retry-After": {"schema": {"type": "string"}}}
        if path in UNAVAILABLE:
            answers["503"] = json_body(error, UNAVAILABLE[path])
        return answers

    def api(path: str, summary: str, answer: dict[str, Any], body: dict[str, Any] | None):
        operation: dict[str, Any] = {
            "summary": summary,
            "operationId": path.strip("/"),
            "responses": {"200": json_body(answer, "Success."), **errors(path)},
        }
        if body is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": body}},
            }
        return {"post": operation}

    def probe(summary: str, answers: dict[int, str], media_type: str = "text/plain"):
        return {
            "get": {
                "summary": summary,
                "operationId": summary.split()[0].lower(),
                "security": [],
                "responses": {
                    str(code): {
                        "description": text,
                        "content": {media_type: {"schema": {"type": "string"}}},
                    }
                    for code, text in answers.items()
                },
            }
        }

    status = ref(ModelStatus, "serialization")
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": TITLE, "version": package_version(), "description": DESCRIPTION},
        "servers": [{"url": "."}],
        "security": [{"bearer": []}],
        "paths": {
            "/score": api(
                "/score",
                "Score customers from their own rows, as the nightly batch would.",
                ref(ScoreResponse, "serialization"),
                ref(ScoreRequest, "validation"),
            ),
            "/lookup": api(
                "/lookup",
                "The served nightly run's scores of these customers.",
                ref(LookupResponse, "serialization"),
                ref(LookupRequest, "validation"),
            ),
            "/status": api("/status", "Which model serves, and the last errors.", status, None),
            "/reload": api("/reload", "Check the champion alias now.", status, None),
            "/healthz": probe("Healthz: the process answers.", {200: "Alive."}),
            "/livez": probe("Livez: the process answers.", {200: "Alive."}),
            "/readyz": probe(
                "Readyz: a model is loaded and the scores store answers.",
                {200: "Ready.", 503: "Not ready, and why (no model yet, the store)."},
            ),
            "/metrics": probe("Metrics (Prometheus text).", {200: "The metrics."}),
        },
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "The service's token (`VAFA_API_TOKEN`), when one is set.",
                }
            },
        },
    }
