"""The online scoring service for the CRM: BentoML's thin layer over `serving.online`.

Start it with `vafa serve` (or `bentoml serve serving.online.service:VafaService` with
`MLFLOW_TRACKING_URI` and `VAFA_STORE_URL` set). It loads the `champion` from the MLflow
registry at start-up and follows the alias; `/score` builds features with the batch's code and
scores them with the batch's `Scorer`; `/lookup` reads the nightly scores store. See the
README's "Online scoring" section for every decision on bad input, docs/online.md for the design.
"""

from __future__ import annotations

import logging
from typing import Annotated

import bentoml
import pandas as pd
from pydantic import Field
from starlette.responses import JSONResponse

from serving.online.champion import ChampionHolder, describe
from serving.online.config import ServiceConfig
from serving.online.guard import Guard, HideRequestData
from serving.online.queue import NotReadyError, ScoringQueue
from serving.online.requests import default_as_of
from serving.online.schema import (
    EXAMPLE_REQUEST,
    MAX_CUSTOMERS,
    CustomerHistory,
    CustomerId,
    LookupResponse,
    ModelStatus,
    ScoreResponse,
    Timestamp,
    duplicate_ids,
)
from serving.store.database import ScoreStore
from serving.store.tables import StoreError

log = logging.getLogger("vafa.service")

Customers = Annotated[
    list[CustomerHistory],
    Field(
        min_length=1,
        max_length=MAX_CUSTOMERS,
        description="Each customer with their own rows (contract section 1, no customer_id).",
        examples=[EXAMPLE_REQUEST["customers"]],
    ),
]
AsOf = Annotated[
    Timestamp | None,
    Field(
        description="Score as of this date: rows at or after it are ignored (and counted). "
        "Default: tomorrow 00:00 UTC, so everything up to now counts.",
        examples=[EXAMPLE_REQUEST["as_of"]],
    ),
]
CustomerIds = Annotated[
    list[CustomerId], Field(min_length=1, max_length=MAX_CUSTOMERS, examples=[["c1", "c2"]])
]


def error(status: int, message: str, field: list[str | int] | None = None) -> JSONResponse:
    """An error body shaped like BentoML's validation errors: what is wrong, and where."""
    detail = [{"loc": field, "msg": message}] if field else []
    return JSONResponse({"error": message, "detail": detail}, status_code=status)


@bentoml.service(name="vafa", workers=1, traffic={"timeout": 60})
class VafaService:
    """Churn risk, value, reasons and next best action for the customer the CRM has open."""

    def __init__(self) -> None:
        import mlflow

        logging.getLogger("bentoml").addFilter(HideRequestData())
        for name in ("bentoml._internal.server.http_app", "bentoml.serve"):
            logging.getLogger(name).addFilter(HideRequestData())
        self.config = ServiceConfig.from_env()
        mlflow.set_tracking_uri(self.config.tracking_uri)
        self.holder = ChampionHolder(poll_seconds=self.config.poll_seconds)
        if not self.holder.refresh():
            log.warning("starting without a model: not ready until a champion loads")
        self.holder.start()
        self.queue = ScoringQueue(self.holder, max_wait=self.config.batch_wait_seconds)
        self._store: ScoreStore | None = None
        self.store_error: str | None = None

    @bentoml.on_shutdown
    def shutdown(self) -> None:
        """Stop following the registry and let the scoring thread finish."""
        self.holder.stop()
        self.queue.close()

    def store(self) -> ScoreStore:
        """The scores store, opened on first use (the batch may create it after start-up)."""
        if self._store is None:
            self._store = ScoreStore(self.config.store_url)
        return self._store

    def _store_ok(self) -> bool:
        try:
            self.store().ping()
        except StoreError as exc:
            self.store_error = describe(exc)
            return False
        self.store_error = None
        return True

    def __is_ready__(self) -> bool:
        """Ready: a model is loaded and the scores store answers."""
        store_ok = self._store_ok()
        return self.holder.current is not None and store_ok

    def __metrics__(self, content: str) -> str:
        """BentoML's request metrics, the served model version, registry trouble, batching."""
        return content + self.holder.metrics() + self.queue.metrics()

    @bentoml.api(route="/score")
    async def score(self, customers: Customers, as_of: AsOf = None) -> ScoreResponse:
        """Score customers from their own rows, as the nightly batch would as of `as_of`."""
        repeated = duplicate_ids(customers)
        if repeated:
            return error(  # type: ignore[return-value]
                400,
                "customer_id repeats an earlier customer of the request",
                ["customers", repeated[0], "customer_id"],
            )
        cutoff = default_as_of() if as_of is None else pd.Timestamp(as_of).as_unit("us")
        try:
            return await self.queue.score(customers, cutoff)
        except NotReadyError:
            return error(503, "no model loaded yet: see /readyz")  # type: ignore[return-value]
        except TimeoutError:
            return error(503, "scoring took too long: try again")  # type: ignore[return-value]

    @bentoml.api(route="/lookup")
    def lookup(self, customer_ids: CustomerIds) -> LookupResponse:
        """The latest nightly scores of these customers; ids never scored come back as unknown."""
        try:
            store = self.store()
            found = store.lookup(customer_ids)
            latest = store.ping()
        except StoreError as exc:
            log.warning("lookup: %s", describe(exc))
            return error(503, "scores store unreachable")  # type: ignore[return-value]
        return LookupResponse(scores=found.found, unknown=found.unknown, latest_run=latest)

    @bentoml.api(route="/status")
    def status(self) -> ModelStatus:
        """Which model serves, since when, and what went wrong at the last look, if anything."""
        return self._status()

    @bentoml.api(route="/reload")
    def reload(self) -> ModelStatus:
        """Check the champion alias now and swap to its version if it moved."""
        self.holder.refresh()
        return self._status()

    def _status(self) -> ModelStatus:
        champion = self.holder.current
        store_ok = self._store_ok()
        return ModelStatus(
            ready=champion is not None and store_ok,
            model_version=None if champion is None else champion.version,
            loaded_at=None if champion is None else champion.loaded_at,
            last_check=self.holder.last_check,
            registry_error=self.holder.error,
            store_error=self.store_error,
        )


# The decorator returns a bentoml.Service; its stubs type it as the class.
VafaService.add_asgi_middleware(Guard)  # type: ignore[attr-defined]
