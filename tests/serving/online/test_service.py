"""The online service over HTTP: real server processes, one champion, shared by these tests.

The server starts before any model exists (it must say it is not ready, not crash), then a
small champion is registered and the service picks it up by polling the alias. A second
server starts with a registry that never answers and a scores store it cannot open.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import re
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from pandas.testing import assert_frame_equal
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from features.build import build_features, feature_columns
from features.schema import Tables, latest_as_of
from serving.online.requests import request_tables
from serving.online.schema import EXAMPLE_REQUEST, MAX_CUSTOMERS, CustomerHistory
from serving.scoring.scorer import Scorer
from serving.store.database import ScoreStore
from serving.store.tables import RUNS_TABLE, SCORES_TABLE
from tests.serving.online.service_server import (
    Server,
    SilentRegistry,
    register,
    start_server,
    train_small,
)
from training.registry import promote
from training.train import TrainResult

pytestmark = pytest.mark.slow  # real server processes

TOKEN = "test-token-1f0c-8a2e-77b9"
CONTRACT = [
    "customer_id",
    "as_of",
    "churn_probability",
    "predicted_spend",
    "clv",
    "value_at_risk",
    "segment",
    "recommended_action",
    "reasons",
    "model_version",
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("service")
    server = start_server(folder, TOKEN)
    try:
        tables, result = train_small()  # while the server starts
        server.wait("/livez")
        with server.client(headers=server.auth) as client:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:  # until the first look at the registry failed
                status = client.post("/status").json()
                if status["registry_error"] is not None:
                    break
                time.sleep(0.2)
            server.observed["before"] = {
                "readyz": httpx.get(server.url + "/readyz"),
                "score": client.post("/score", json=EXAMPLE_REQUEST),
                "status": status,
            }
        server.observed["version"] = register(result, server.env["MLFLOW_TRACKING_URI"])
        server.wait("/readyz", 200, timeout=60)
        server.observed.update(tables=tables, result=result)
        yield server
    finally:
        server.stop()


@pytest.fixture
def client(server: Server) -> Iterator[httpx.Client]:
    with server.client(headers=server.auth) as c:
        yield c


def crm_request(tables: Tables, ids: list[str], as_of: str | None = None) -> dict[str, Any]:
    """What the CRM sends for these customers: their rows in the contract's columns, as JSON."""

    def rows(frame: pd.DataFrame | None, cid: str) -> list[dict[str, Any]]:
        assert frame is not None
        own = frame[frame["customer_id"] == cid].drop(columns="customer_id")
        return json.loads(own.to_json(orient="records", date_format="iso", date_unit="us"))

    customers = []
    for cid in ids:
        profile = rows(tables.customers, cid)
        customers.append(
            {
                "customer_id": cid,
                "transactions": rows(tables.transactions, cid),
                "events": rows(tables.events, cid),
                "profile": profile[0] if profile else None,
            }
        )
    return {"customers": customers, **({"as_of": as_of} if as_of else {})}


def some_customers(tables: Tables, n: int = 12) -> list[str]:
    """A spread: the busiest, one-purchase customers, refunders, customers without events."""
    tx = tables.transactions
    counts = tx["customer_id"].value_counts()
    refunders = tx.loc[tx["amount"] < 0, "customer_id"].unique()[:2].tolist()
    assert tables.events is not None
    silent = sorted(set(tx["customer_id"]) - set(tables.events["customer_id"]))[:2]
    picked = [*counts.index[:3], *counts.index[-3:], *refunders, *silent, *counts.index[100:103]]
    return list(dict.fromkeys(picked))[:n]


# --- start-up and readiness --------------------------------------------------------------------


def test_without_a_model_it_runs_and_says_it_is_not_ready(server: Server) -> None:
    before = server.observed["before"]
    assert before["readyz"].status_code == 503
    assert "no model loaded yet (registry: " in before["readyz"].text  # and why
    assert before["score"].status_code == 503
    assert "no model" in before["score"].json()["error"]
    assert before["status"]["ready"] is False and before["status"]["model_version"] is None
    assert "registry" in before["status"]["registry_error"]


def test_ready_once_the_champion_is_registered(server: Server, client: httpx.Client) -> None:
    assert httpx.get(server.url + "/readyz").status_code == 200
    status = client.post("/status").json()
    assert status["ready"] is True and status["model_version"] == server.observed["version"]
    assert status["registry_error"] is None and status["store_error"] is None


# --- auth and open endpoints -------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/healthz", "/livez", "/readyz", "/metrics"])
def test_health_and_metrics_need_no_token(server: Server, path: str) -> None:
    assert httpx.get(server.url + path).status_code == 200


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}, {"Authorization": "Basic x"}],
)
@pytest.mark.parametrize(
    "method,path",
    [("POST", "/score"), ("POST", "/lookup"), ("POST", "/status"), ("POST", "/reload")],
)
def test_everything_else_needs_the_token(
    server: Server, headers: dict[str, str], method: str, path: str
) -> None:
    response = httpx.request(method, server.url + path, headers=headers, json=EXAMPLE_REQUEST)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert TOKEN not in response.text


def test_the_docs_need_no_token(server: Server) -> None:
    """The page and the description hold no data: a CRM developer reads them without one."""
    spec = httpx.get(server.url + "/docs.json").json()
    assert {"/score", "/lookup"} <= set(spec["paths"])
    assert spec["info"]["title"] == "Vafa online scoring" and spec["info"]["version"] != "None"
    page = httpx.get(server.url + "/")
    assert page.status_code == 200 and "swagger" in page.text.lower()
    assert httpx.get(server.url + "/static_content/swagger-ui.css").status_code == 200


@pytest.mark.parametrize("path", ["/score", "/lookup", "/status", "/reload"])
def test_forms_get_415_not_500(client: httpx.Client, path: str) -> None:
    """BentoML's form parser answered multipart bodies with 500 on every route."""
    multipart = client.post(path, files={"customers": ("c.json", b"[]")})
    assert multipart.status_code == 415, multipart.text
    assert "application/json" in multipart.json()["error"]
    form = client.post(path, data={"customer_ids": "c1"})
    assert form.status_code == 415


def test_metrics_count_requests(server: Server, client: httpx.Client) -> None:
    client.post("/score", json=EXAMPLE_REQUEST)
    metrics = httpx.get(server.url + "/metrics").text
    assert 'vafa_http_requests_total{endpoint="/score",http_response_code="200"}' in metrics
    assert f'vafa_model_loaded{{version="{server.observed["version"]}"}} 1' in metrics
    answered = re.search(r"^vafa_scoring_requests_total (\d+)$", metrics, re.MULTILINE)
    assert answered is not None and int(answered.group(1)) >= 1


def _series(metrics: str) -> int:
    return sum(1 for line in metrics.splitlines() if line and not line.startswith("#"))


def test_random_paths_do_not_grow_the_metrics(server: Server, client: httpx.Client) -> None:
    """2,000 random paths (all 401) once added 40,408 series and 173 MB to the worker."""
    for path in ("/nothing", "/also/nothing"):  # the `other` series exist from here on
        httpx.get(server.url + path)
        client.get(path)
    before = _series(httpx.get(server.url + "/metrics").text)
    with httpx.Client(base_url=server.url, timeout=30) as anonymous:
        for i in range(300):
            anonymous.get(f"/{uuid.uuid4().hex}/{i}")
            anonymous.post(f"/score/{uuid.uuid4().hex}")
    for _ in range(50):  # with the token too: a 404 is no new series either
        client.get(f"/{uuid.uuid4().hex}")
    metrics = httpx.get(server.url + "/metrics").text
    assert _series(metrics) <= before + 5, _series(metrics) - before
    assert "nothing" not in metrics


# --- scoring -----------------------------------------------------------------------------------


def test_score_the_example(server: Server, client: httpx.Client) -> None:
    response = client.post("/score", json=EXAMPLE_REQUEST)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["as_of"] == "2026-11-01T00:00:00Z" and body["as_of_from"] == "request"
    (row,) = body["scores"]
    assert row["as_of"] == "2026-11-01T00:00:00.000Z"
    assert row["expected_next_order"] is None or row["expected_next_order"].endswith("Z")
    assert set(CONTRACT) <= set(row)
    assert row["customer_id"] == "c1" and row["model_version"] == body["model_version"]
    assert 0 <= row["churn_probability"] <= 1 and row["clv"] >= 0
    assert row["reasons"] and row["recommended_action"]
    assert body["unscored"] == [] and body["ignored_rows"] == {"transactions": 0, "events": 0}


def test_online_features_equal_the_batch_features(server: Server) -> None:
    """The same rows, as the CRM sends them, give the batch's feature rows exactly."""
    tables, result = server.observed["tables"], server.observed["result"]
    as_of = pd.Timestamp("2026-09-01")  # later rows exist: they must be ignored alike
    ids = some_customers(tables)
    request = crm_request(tables, ids)
    customers = [CustomerHistory.model_validate(c) for c in request["customers"]]
    event_types = result.bundle.spec.event_types
    # `/score`'s path: its request tables, and the features as a dict of columns.
    online = pd.DataFrame(
        feature_columns(request_tables(customers, ids), as_of, event_types=event_types)
    )
    batch = build_features(tables, as_of, event_types=event_types)
    batch = batch[batch["customer_id"].isin(ids)].reset_index(drop=True)
    assert len(online) >= 8
    assert_frame_equal(online, batch, check_categorical=False)


def test_scores_over_http_equal_the_batch_scorer(server: Server, client: httpx.Client) -> None:
    tables, result = server.observed["tables"], server.observed["result"]
    ids = some_customers(tables)
    response = client.post("/score", json=crm_request(tables, ids, as_of="2026-09-01"))
    assert response.status_code == 200, response.text
    body = response.json()
    as_of = pd.Timestamp("2026-09-01")
    features = build_features(tables, as_of, event_types=result.bundle.spec.event_types)
    expected = Scorer(result.bundle, body["model_version"], num_threads=1).score(
        features[features["customer_id"].isin(ids)].reset_index(drop=True), as_of
    )
    online = pd.DataFrame(body["scores"]).set_index("customer_id").sort_index()
    expected = expected.set_index("customer_id").sort_index()
    assert list(online.index) == list(expected.index)
    for column in ("churn_probability", "predicted_spend", "clv", "value_at_risk"):
        np.testing.assert_allclose(online[column], expected[column], rtol=1e-9, err_msg=column)
    for column in ("segment", "recommended_action", "reasons"):
        assert online[column].tolist() == expected[column].tolist(), column
    # Customers whose only purchases are after as_of are reported, not scored.
    scored = set(features["customer_id"])
    assert {u["customer_id"] for u in body["unscored"]} == set(ids) - scored
    later = tables.transactions["ts"] >= as_of
    assert body["ignored_rows"]["transactions"] == int(
        (later & tables.transactions["customer_id"].isin(ids)).sum()
    )


def test_rows_at_or_after_as_of_are_ignored_and_counted(client: httpx.Client) -> None:
    base = client.post("/score", json=EXAMPLE_REQUEST).json()
    request = copy.deepcopy(EXAMPLE_REQUEST)
    customer = request["customers"][0]
    customer["transactions"].append({"ts": "2026-11-01", "amount": 500.0})
    customer["events"].append({"ts": "2027-01-05T10:00:00Z", "event": "complaint"})
    body = client.post("/score", json=request).json()
    assert body["ignored_rows"] == {"transactions": 1, "events": 1}
    assert body["scores"][0]["churn_probability"] == base["scores"][0]["churn_probability"]


def test_customers_without_a_purchase_before_as_of_are_listed_unscored(
    client: httpx.Client,
) -> None:
    request = copy.deepcopy(EXAMPLE_REQUEST)
    request["customers"] += [
        {"customer_id": "empty", "transactions": []},
        {"customer_id": "future", "transactions": [{"ts": "2027-01-01", "amount": 3.0}]},
    ]
    response = client.post("/score", json=request)
    assert response.status_code == 200, response.text
    body = response.json()
    assert [s["customer_id"] for s in body["scores"]] == ["c1"]
    assert [u["customer_id"] for u in body["unscored"]] == ["empty", "future"]


def test_unknown_event_names_are_accepted(client: httpx.Client) -> None:
    request = copy.deepcopy(EXAMPLE_REQUEST)
    request["customers"][0]["events"].append({"ts": "2026-10-03", "event": "wish list add"})
    assert client.post("/score", json=request).status_code == 200


def test_unknown_fields_get_400_naming_them(client: httpx.Client) -> None:
    """A misspelled optional column used to vanish without a word."""
    request = copy.deepcopy(EXAMPLE_REQUEST)
    request["customers"][0]["transactions"][0]["chanel"] = "web"
    request["customers"][0]["profile"]["segmnt"] = "student"
    request["asof"] = "2026-11-01"
    response = client.post("/score", json=request)
    assert response.status_code == 400, response.text
    found = {tuple(d["loc"]): d["msg"] for d in response.json()["detail"]}
    assert set(found) == {
        ("customers", 0, "transactions", 0, "chanel"),
        ("customers", 0, "profile", "segmnt"),
        ("asof",),
    }
    assert all(msg.startswith("unknown field") for msg in found.values())
    assert client.post("/lookup", json={"customer_ids": ["c1"], "ids": []}).status_code == 400


def test_a_zoned_as_of_is_one_moment_at_the_top_and_in_every_row(client: httpx.Client) -> None:
    request = {**EXAMPLE_REQUEST, "as_of": "2026-11-01T05:30:00+05:30"}
    body = client.post("/score", json=request).json()
    assert body["as_of"] == "2026-11-01T00:00:00Z"
    assert [row["as_of"] for row in body["scores"]] == ["2026-11-01T00:00:00.000Z"]
    later = client.post("/score", json={**EXAMPLE_REQUEST, "as_of": "2026-11-01T10:00:00-02:00"})
    assert later.json()["as_of"] == "2026-11-01T12:00:00Z"
    assert later.json()["scores"][0]["as_of"] == "2026-11-01T12:00:00.000Z"


def test_without_as_of_the_clock_decides_and_the_answer_says_so(client: httpx.Client) -> None:
    """Tomorrow 00:00 UTC (the batch's latest as-of), not the customer's last purchase."""
    request = {k: v for k, v in EXAMPLE_REQUEST.items() if k != "as_of"}
    body = client.post("/score", json=request).json()
    assert body["as_of_from"] == "clock"
    answered = dt.datetime.fromisoformat(body["as_of"])
    assert answered == latest_as_of().to_pydatetime().replace(tzinfo=dt.UTC)


def test_small_requests_are_answered_while_a_large_one_is_scored(
    server: Server, client: httpx.Client
) -> None:
    """A 15 MB request once held single-customer requests up to 2.65 s behind it (this: 14 MB).

    Its body is now checked in slices and scored in parts; small requests sent all along are
    answered in a fraction of its time, not after it.
    """
    row = {"ts": "2026-01-01T10:00:00Z", "amount": 1.5, "order_id": "o", "channel": "web"}
    event = {"ts": "2026-01-02T10:00:00Z", "event": "email_open", "channel": "email"}
    large = {
        "as_of": "2026-11-01",
        "customers": [
            {"customer_id": f"big{i}", "transactions": [row] * 200, "events": [event] * 200}
            for i in range(450)
        ],
    }
    body = json.dumps(large).encode()
    headers = {**server.auth, "content-type": "application/json"}
    small: list[float] = []
    done = threading.Event()

    def ask_small() -> None:
        with server.client(headers=server.auth) as own:
            while not done.is_set():
                started = time.monotonic()
                answer = own.post("/score", json=EXAMPLE_REQUEST)
                assert answer.status_code == 200, answer.text
                small.append(time.monotonic() - started)

    with ThreadPoolExecutor(2) as pool:
        asking = pool.submit(ask_small)
        time.sleep(0.3)  # small requests flowing first
        started = time.monotonic()
        answer = client.post("/score", content=body, headers=headers)
        took = time.monotonic() - started
        done.set()
        asking.result()
    assert answer.status_code == 200, answer.text[:500]
    assert len(answer.json()["scores"]) == 450
    assert took > 0.3, took  # long enough that waiting behind it would show
    assert small and max(small) < 0.5 * took, (max(small), took)


def _bad(path: list[Any], value: Any) -> dict[str, Any]:
    request = copy.deepcopy(EXAMPLE_REQUEST)
    target: Any = request
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return request


TX = ["customers", 0, "transactions", 0]
EV = ["customers", 0, "events", 1]


@pytest.mark.parametrize(
    "request_body,field",
    [
        (_bad([*TX, "amount"], "12.5"), [*TX, "amount"]),
        (_bad([*TX, "amount"], 1e300), [*TX, "amount"]),
        (_bad([*TX, "amount"], True), [*TX, "amount"]),
        (_bad([*TX, "ts"], "yesterday"), [*TX, "ts"]),
        (_bad([*TX, "ts"], 1714570000), [*TX, "ts"]),
        (_bad([*TX, "ts"], "1066-10-14"), [*TX, "ts"]),
        (_bad([*TX, "discount"], -1.0), [*TX, "discount"]),
        (_bad(["customers", 0, "customer_id"], "  "), ["customers", 0, "customer_id"]),
        (_bad(["customers", 0, "customer_id"], 7), ["customers", 0, "customer_id"]),
        (_bad([*EV, "value"], 11), EV),
        (_bad([*EV, "event"], ""), [*EV, "event"]),
        (_bad(["customers"], []), ["customers"]),
        (_bad(["as_of"], "soon"), ["as_of"]),
        ({"as_of": "2026-11-01"}, ["customers"]),
    ],
)
def test_bad_input_gets_400_naming_the_field(
    client: httpx.Client, request_body: dict[str, Any], field: list[Any]
) -> None:
    response = client.post("/score", json=request_body)
    assert response.status_code == 400, response.text
    locations = [d["loc"] for d in response.json()["detail"]]
    assert any(loc[: len(field)] == field for loc in locations), locations


def test_nan_and_infinity_are_refused(client: httpx.Client) -> None:
    text = json.dumps(EXAMPLE_REQUEST).replace('"amount": 42.5', '"amount": NaN')
    headers = {"content-type": "application/json"}
    assert client.post("/score", content=text, headers=headers).status_code == 400
    text = json.dumps(EXAMPLE_REQUEST).replace('"amount": 42.5', '"amount": Infinity')
    assert client.post("/score", content=text, headers=headers).status_code == 400


def test_repeated_customer_ids_get_400(client: httpx.Client) -> None:
    request = copy.deepcopy(EXAMPLE_REQUEST)
    request["customers"] *= 2
    response = client.post("/score", json=request)
    assert response.status_code == 400
    assert response.json()["detail"][0]["loc"] == ["customers", 1, "customer_id"]


def test_not_json_gets_400(client: httpx.Client) -> None:
    response = client.post(
        "/score", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 400


def test_limits(client: httpx.Client) -> None:
    many = {"customers": [{"customer_id": f"c{i}"} for i in range(MAX_CUSTOMERS + 1)]}
    response = client.post("/score", json=many)
    assert response.status_code == 400
    assert ["customers"] in [d["loc"] for d in response.json()["detail"]]
    huge = b'{"customers": [' + b" " * (17 * 1024 * 1024) + b"]}"
    assert client.post("/score", content=huge).status_code == 413

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while read
        for _ in range(17):
            yield b" " * (1024 * 1024)

    assert client.post("/score", content=chunks()).status_code == 413


def test_logs_hold_no_customer_data_or_token(server: Server, client: httpx.Client) -> None:
    secret_id = "customer-7fd1e2"
    request = _bad(["customers", 0, "customer_id"], secret_id)
    assert client.post("/score", json=request).status_code == 200
    bad = _bad([*TX, "amount"], "secret-amount-93")
    assert client.post("/score", json=bad).status_code == 400
    httpx.post(server.url + "/score", json=request, headers={"Authorization": "Bearer guess-55"})
    time.sleep(0.5)
    log = server.log.read_text(errors="replace")
    for needle in (secret_id, "secret-amount-93", TOKEN, "guess-55"):
        assert needle not in log, needle
    rejected = [line for line in log.splitlines() if "invalid request body" in line]
    assert rejected and all("[INFO]" in line for line in rejected)


# --- lookup ------------------------------------------------------------------------------------


def test_lookup_returns_the_nightly_scores_and_lists_unknown_ids(
    server: Server, client: httpx.Client
) -> None:
    tables, result = server.observed["tables"], server.observed["result"]
    features = build_features(tables, pd.Timestamp("2026-11-01"))
    scores = Scorer(result.bundle, "1").score(features.head(50), pd.Timestamp("2026-11-01"))
    ScoreStore(server.env["VAFA_STORE_URL"]).upsert(scores)
    known = scores["customer_id"].tolist()[:3]
    response = client.post("/lookup", json={"customer_ids": [*known, "nobody"]})
    assert response.status_code == 200, response.text
    body = response.json()
    assert [s["customer_id"] for s in body["scores"]] == known
    assert body["unknown"] == ["nobody"]
    assert body["latest_run"] == "2026-11-01"
    assert body["scores"][0]["as_of"] == "2026-11-01T00:00:00.000Z"  # stored without a zone
    first = scores.iloc[0]
    assert body["scores"][0]["churn_probability"] == pytest.approx(first["churn_probability"])


def test_lookup_validates_ids(client: httpx.Client) -> None:
    assert client.post("/lookup", json={"customer_ids": []}).status_code == 400
    assert client.post("/lookup", json={"customer_ids": [""]}).status_code == 400
    assert client.post("/lookup", json={"customer_ids": "c1"}).status_code == 400
    nul = client.post("/lookup", json={"customer_ids": ["c1", "a\x00b"]})  # once a 503
    assert nul.status_code == 400 and nul.json()["detail"][0]["loc"] == ["customer_ids", 1]


def test_what_the_store_cannot_read_is_a_503_that_says_so(
    server: Server, client: httpx.Client
) -> None:
    """A row that is not JSON, a run date that is not a date: once 500s on three routes."""
    database = Path(server.env["VAFA_STORE_URL"].removeprefix("sqlite:///"))
    known = client.post("/lookup", json={"customer_ids": ["nobody"]}).json()
    assert known["latest_run"] is not None  # a run is served (test_lookup wrote it)
    with sqlite3.connect(database) as db:
        (cid, payload) = db.execute(f"SELECT customer_id, payload FROM {SCORES_TABLE}").fetchone()
        (as_of,) = db.execute(f"SELECT as_of FROM {RUNS_TABLE}").fetchone()
        db.execute(f"UPDATE {SCORES_TABLE} SET payload = 'not json' WHERE customer_id = ?", [cid])
    try:
        broken = client.post("/lookup", json={"customer_ids": [cid]})
        assert broken.status_code == 503, broken.text
        assert "cannot read" in broken.json()["error"] and cid not in broken.text
        with sqlite3.connect(database) as db:
            db.execute(
                f"UPDATE {SCORES_TABLE} SET payload = ? WHERE customer_id = ?", [payload, cid]
            )
            db.execute(f"UPDATE {RUNS_TABLE} SET as_of = 'not a date'")
        for answer in (
            client.post("/lookup", json={"customer_ids": [cid]}),
            httpx.get(server.url + "/readyz"),
        ):
            assert answer.status_code == 503, answer.text
            assert "not a date" in answer.text
        status = client.post("/status")
        assert status.status_code == 200 and "not a date" in status.json()["store_error"]
    finally:
        with sqlite3.connect(database) as db:
            db.execute(
                f"UPDATE {SCORES_TABLE} SET payload = ? WHERE customer_id = ?", [payload, cid]
            )
            db.execute(f"UPDATE {RUNS_TABLE} SET as_of = ?", [as_of])
    assert client.post("/lookup", json={"customer_ids": [cid]}).status_code == 200
    assert httpx.get(server.url + "/readyz").status_code == 200


# --- fuzzing -----------------------------------------------------------------------------------

CONFORMANCE = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


def test_fuzzed_requests_get_answers_true_to_the_spec(server: Server) -> None:
    """Property-based requests from the published OpenAPI spec, valid and invalid alike.

    Every answer is checked against the spec: no server error, a status code it lists, its
    media type, headers and body schema (13 answers broke it once: error details declared
    text, date-times without a zone, nulls declared as text). Bodies the spec allows come
    first, then bodies it does not (which must get an error the spec lists).
    """
    schema = schemathesis.openapi.from_url(server.url + "/docs.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {"/score", "/lookup"} <= {op.path for op in operations}
    calls: list[tuple[str, GenerationMode, int]] = []

    def fuzz(operation: Any, mode: GenerationMode, examples: int) -> None:
        # The token given: negative cases break the body, not the (declared) auth header.
        @given(case=operation.as_strategy(generation_mode=mode, headers=server.auth))
        # Derandomized: the same cases every run, so the checks below cannot pass one run
        # and fail the next on the luck of the draw (25 random cases once sent no bad id).
        @settings(
            max_examples=examples,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
        def call(case: Any) -> None:
            response = case.call_and_validate(headers=server.auth, checks=CONFORMANCE)
            calls.append((case.operation.path, mode, response.status_code))

        call()

    for operation in operations:
        fuzz(operation, GenerationMode.POSITIVE, 25)
    for operation in operations:
        if operation.path in ("/score", "/lookup"):
            fuzz(operation, GenerationMode.NEGATIVE, 15)
    assert len(calls) >= 4 * len(operations)
    answered = {(path, mode) for path, mode, status in calls if status == 200}
    refused = {(path, mode) for path, mode, status in calls if 400 <= status < 500}
    positive, negative = GenerationMode.POSITIVE, GenerationMode.NEGATIVE
    assert {("/score", positive), ("/lookup", positive)} <= answered, calls
    assert {("/score", negative), ("/lookup", negative)} <= refused, calls
    assert not {(path, mode) for path, mode in answered if mode == negative}, calls


# --- model updates (last: they change the served version) --------------------------------------


def test_champion_swap_under_concurrent_requests(server: Server) -> None:
    result: TrainResult = server.observed["result"]
    old = server.observed["version"]
    outcomes: list[tuple[int, str | None, set[str]]] = []
    stop = threading.Event()

    def hammer() -> None:
        with server.client(headers=server.auth) as c:
            while not stop.is_set():
                try:
                    r = c.post("/score", json=EXAMPLE_REQUEST)
                except httpx.HTTPError as exc:
                    outcomes.append((0, repr(exc), set()))
                    continue
                body = r.json() if r.status_code == 200 else {}
                rows = {s["model_version"] for s in body.get("scores", [])}
                outcomes.append((r.status_code, body.get("model_version"), rows))

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(1.0)
        new = register(result, server.env["MLFLOW_TRACKING_URI"])  # a challenger ...
        promote(new)  # ... made champion by hand; the service polls every second
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any(o[1] == new for o in outcomes[-5:]):
            time.sleep(0.2)
        time.sleep(1.0)
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    assert outcomes, "no requests were made"
    failures = [o for o in outcomes if o[0] != 200]
    assert not failures, failures[:3]
    assert {o[1] for o in outcomes} == {old, new}
    assert all(rows == {version} for _, version, rows in outcomes)


def test_reload_swaps_at_once(server: Server, client: httpx.Client) -> None:
    first = server.observed["version"]
    promote(first)  # back to the first champion; /reload need not wait for the poll
    status = client.post("/reload").json()
    assert status["ready"] is True and status["model_version"] == first
    assert client.post("/score", json=EXAMPLE_REQUEST).json()["model_version"] == first


# --- the registry never answers, the scores store cannot be opened -----------------------------


@pytest.fixture(scope="module")
def down(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server whose registry never answers, with its scores store under a file.

    A registry request may take 30 s here: a start-up that waited for it would be mute for
    minutes.
    """
    folder = tmp_path_factory.mktemp("down")
    (folder / "a-file").write_text("not a folder")
    with SilentRegistry() as registry:
        server = start_server(
            folder,
            TOKEN,
            poll_seconds=0,
            MLFLOW_TRACKING_URI=registry,
            VAFA_STORE_URL=f"sqlite:///{folder / 'a-file' / 'scores.db'}",
            MLFLOW_HTTP_REQUEST_TIMEOUT="30",
            VAFA_RELOAD_WAIT_SECONDS="2",
            VAFA_HEADER_TIMEOUT_SECONDS="1",
        )
        try:
            server.wait("/livez", timeout=150)
            server.observed["readyz"] = httpx.get(server.url + "/readyz", timeout=10)
            yield server
        finally:
            server.stop()


def test_liveness_does_not_wait_for_the_registry(down: Server) -> None:
    """Alive while the registry is still being asked; not ready, saying why."""
    readyz = down.observed["readyz"]
    assert readyz.status_code == 503
    assert "no model loaded yet (loading it)" in readyz.text
    started = time.monotonic()
    assert httpx.get(down.url + "/livez", timeout=10).status_code == 200
    assert time.monotonic() - started < 2


def test_reload_answers_within_its_wait_with_a_clear_error(down: Server) -> None:
    """/reload once gave 504 after 60 s."""
    with down.client(headers=down.auth) as client:
        started = time.monotonic()
        reload = client.post("/reload")
        took = time.monotonic() - started
    assert reload.status_code == 503 and took < 10, (reload.status_code, took)
    assert "registry did not answer within 2 s" in reload.json()["error"]


def test_a_store_under_a_file_is_a_503_never_a_500(down: Server) -> None:
    with down.client(headers=down.auth) as client:
        status = client.post("/status")
        assert status.status_code == 200
        assert status.json()["ready"] is False and "scores store" in status.json()["store_error"]
        lookup = client.post("/lookup", json={"customer_ids": ["c1"]})
        assert lookup.status_code == 503 and "scores store unreachable" in lookup.json()["error"]
        score = client.post("/score", json=EXAMPLE_REQUEST)
        assert score.status_code == 503 and "no model" in score.json()["error"]
    assert httpx.get(down.url + "/readyz", timeout=10).status_code == 503


def test_a_stalled_connection_is_closed(down: Server) -> None:
    """Headers that never end (or never start) once held a connection for good."""
    host, port = down.url.removeprefix("http://").split(":")
    for sent in (b"", b"POST /score HTTP/1.1\r\nHost: x\r\n"):
        with socket.create_connection((host, int(port))) as sock:
            sock.settimeout(15)
            sock.sendall(sent)
            started = time.monotonic()
            assert sock.recv(100) == b""  # closed by the server
            assert time.monotonic() - started < 5
