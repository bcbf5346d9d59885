"""The online scoring service for the CRM: BentoML's thin layer over `serving.online`.

Start it with `vafa serve` (or `bentoml serve serving.online.service:VafaService` with
`MLFLOW_TRACKING_URI` and `VAFA_STORE_URL` set). It loads the `champion` from the MLflow
registry in the background and follows the alias; `/score` builds features with the batch's
code and scores them with the batch's `Scorer`; `/lookup` reads the nightly scores store. See
the README's "Online scoring" section for every decision on bad input, docs/online.md for the
design.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os

import bentoml
import pandas as pd
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse

from serving.online import connections
from serving.online.champion import ChampionHolder, describe
from serving.online.config import DEFAULT_HEADER_TIMEOUT_SECONDS, ServiceConfig
from serving.online.guard import Guard, HideRequestData
from serving.online.metrics import RequestMetrics
from serving.online.queue import NotReadyError, ScoringQueue
from serving.online.requests import clock_as_of
from serving.online.responses import LookupResponse, ModelStatus, ScoreResponse, stored_rows
from serving.online.runtime import large_request
from serving.online.schema import (
    CustomerHistory,
    LargeBody,
    LookupRequest,
    NoBody,
    ScoreInput,
    Timestamp,
    checked_in_slices,
    duplicate_ids,
)
from serving.store.database import ScoreStore
from serving.store.tables import InvalidCustomerId, StoreDataError, StoreError

log = logging.getLogger("vafa.service")

# uvicorn loads its protocol after BentoML's worker imports this module, before any
# connection: connections get a deadline for their headers (`connections`).
connections.install(DEFAULT_HEADER_TIMEOUT_SECONDS)


def error(status: int, message: str, field: list[str | int] | None = None) -> JSONResponse:
    """An error body shaped like a validation error's: what is wrong, and where."""
    detail = [{"loc": field, "msg": message}] if field else []
    return JSONResponse({"error": message, "detail": detail}, status_code=status)


@bentoml.service(
    name="vafa",
    workers=1,
    traffic={"timeout": 60},
    # Request metrics labelled by route come from `RequestMetrics`: BentoML's labelled every
    # raw path, so anyone could grow them without bound.
    metrics={"enabled": False},
)
class VafaService:
    """Churn risk, value, reasons and next best action for the customer the CRM has open."""

    def __init__(self) -> None:
        import mlflow

        logging.getLogger("bentoml").addFilter(HideRequestData())
        for name in ("bentoml._internal.server.http_app", "bentoml.serve"):
            logging.getLogger(name).addFilter(HideRequestData())
        self.config = ServiceConfig.from_env()
        connections.HeaderDeadline.seconds = self.config.header_timeout_seconds
        os.environ.update(self.config.registry_environment())
        mlflow.set_tracking_uri(self.config.tracking_uri)
        self.holder = ChampionHolder(poll_seconds=self.config.poll_seconds)
        self.holder.start()  # in the background: liveness answers while the registry is asked
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
        """Ready: a model is loaded and the scores store answers; else 503 saying why."""
        store_ok = self._store_ok()
        if self.holder.current is None:
            why = "loading it" if self.holder.checking else self.holder.error or "no champion"
            raise HTTPException(503, f"not ready: no model loaded yet ({why})")
        if not store_ok:
            raise HTTPException(503, f"not ready: scores store: {self.store_error}")
        return True

    def metrics_text(self) -> str:
        """The served model version, registry trouble and batching, for `/metrics`."""
        return self.holder.metrics() + self.queue.metrics()

    @bentoml.api(route="/score", input_spec=ScoreInput)
    async def score(
        self, customers: list[CustomerHistory] | LargeBody, as_of: Timestamp | None = None
    ) -> ScoreResponse:
        """Score customers from their own rows, as the nightly batch would as of `as_of`."""
        if isinstance(customers, LargeBody):
            with large_request():  # the collector paused, the GIL shared (`runtime`)
                request = await checked_in_slices(customers)  # ValidationError: BentoML's 400
                answer = await self._score(request.customers, request.as_of)
                del request  # freed before the collector runs again, never walked by it
            return answer
        return await self._score(customers, as_of)

    async def _score(
        self, customers: list[CustomerHistory], as_of: dt.datetime | None
    ) -> ScoreResponse:
        repeated = duplicate_ids(customers)
        if repeated:
            return error(  # type: ignore[return-value]
                400,
                "customer_id repeats an earlier customer of the request",
                ["customers", repeated[0], "customer_id"],
            )
        cutoff = clock_as_of() if as_of is None else pd.Timestamp(as_of).as_unit("us")
        try:
            answer = await self.queue.score(customers, cutoff)
        except NotReadyError:
            return error(503, "no model loaded yet: see /readyz")  # type: ignore[return-value]
        except TimeoutError:
            return error(503, "scoring took too long: try again")  # type: ignore[return-value]
        if as_of is None:
            answer.as_of_from = "clock"
        return answer

    @bentoml.api(route="/lookup", input_spec=LookupRequest)
    def lookup(self, customer_ids: list[str]) -> LookupResponse:
        """The served nightly run's scores of these customers; ids it does not hold listed."""
        try:
            found = self.store().lookup(customer_ids)
        except InvalidCustomerId as exc:
            return error(400, str(exc), ["customer_ids"])  # type: ignore[return-value]
        except StoreDataError as exc:
            log.warning("lookup: %s", describe(exc))
            message = f"scores store holds data it cannot read: {describe(exc)}"
            return error(503, message)  # type: ignore[return-value]
        except StoreError as exc:
            log.warning("lookup: %s", describe(exc))
            message = f"scores store unreachable: {describe(exc)}"
            return error(503, message)  # type: ignore[return-value]
        return LookupResponse(
            scores=stored_rows(found.found), unknown=found.unknown, latest_run=found.as_of
        )

    @bentoml.api(route="/status", input_spec=NoBody)
    def status(self) -> ModelStatus:
        """Which model serves, since when, and what went wrong at the last look, if anything."""
        return self._status()

    @bentoml.api(route="/reload", input_spec=NoBody)
    async def reload(self) -> ModelStatus:
        """Check the champion alias now and swap to its version if it moved.

        Waits for the registry at most `VAFA_RELOAD_WAIT_SECONDS`; 503 if it failed or is
        still being asked (the check goes on, see `/status`).
        """
        wait = self.config.reload_wait_seconds
        check = asyncio.wrap_future(self.holder.check())
        done, _ = await asyncio.wait([check], timeout=wait)
        if not done:
            message = (
                f"the registry did not answer within {wait:g} s; the check goes on in the "
                "background (see /status)"
            )
            return error(503, message)  # type: ignore[return-value]
        failure = check.result()
        if failure is not None:
            current = self.holder.current
            kept = "no model is loaded" if current is None else f"serving version {current.version}"
            return error(503, f"{failure}; {kept}")  # type: ignore[return-value]
        return await asyncio.to_thread(self._status)

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


def _service_metrics() -> str:
    """The running service's own metrics (none before it has started)."""
    service = bentoml.get_current_service()
    return service.metrics_text() if hasattr(service, "metrics_text") else ""


# The decorator returns a bentoml.Service; its stubs type it as the class. The first added is
# the outermost: every request is counted, refused ones too.
VafaService.add_asgi_middleware(RequestMetrics, extra=_service_metrics)  # type: ignore[attr-defined]
VafaService.add_asgi_middleware(Guard)  # type: ignore[attr-defined]
