"""The REST API over a :class:`~symbatcher.queue.JobQueue`.

Endpoints: ``POST /jobs``, ``GET /jobs``, ``GET /jobs/{id}``, ``DELETE /jobs/{id}``
(cancel; ``?purge=true``: remove an ended job), ``POST /jobs/{id}/retry`` (a failed or
cancelled job, queued again, with settings changed if a body says so),
``GET /jobs/{id}/results`` (JSON Lines, ``offset``/``limit``), ``GET /jobs/{id}/events``
(server-sent progress events until the job ends), ``GET /stats``, ``GET /healthz``;
OpenAPI docs at ``/docs``. With a token (``SYMBATCHER_API_TOKEN``) every endpoint but
``/healthz`` wants ``Authorization: Bearer <token>``. A job names a registered expression
only, and reads a server-side file only inside the allowed folders.
"""

from __future__ import annotations

import asyncio
import hmac
import itertools
import json
import os
import shutil
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    ValidationError,
    field_validator,
)

from symbatcher.config import WithParams
from symbatcher.data import DataFormatError
from symbatcher.dispatch import DEFAULT_LINGER
from symbatcher.queue.jobs import (
    ENDED,
    Job,
    JobNotFoundError,
    JobQueue,
    JobState,
    JobStateError,
)
from symbatcher.queue.registry import ExpressionRegistry, UnknownExpressionError
from symbatcher.queue.registry import registry as default_registry
from symbatcher.scheduler import build_problem

if TYPE_CHECKING:
    from symbatcher.store.export import CsvTable
    from symbatcher.store.sqlite import SQLiteStore

TOKEN_ENV = "SYMBATCHER_API_TOKEN"
MAX_BODY = 10 * 1024 * 1024
MAX_ITEMS = 1_000_000


class JobSettings(WithParams):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    workers: int = Field(default=8, ge=1, le=1024)
    batch_size: int = Field(default=5, ge=1, le=1024)
    max_inflight_batches: int | None = Field(
        default=None, ge=1, le=1024, description="batches out at the engine at once"
    )
    linger: float = Field(
        default=DEFAULT_LINGER,
        ge=0,
        le=60,
        description="seconds a call may wait for its batch to fill",
    )
    max_cost: float | None = Field(default=None, gt=0)
    prices: dict[str, tuple[NonNegativeFloat, NonNegativeFloat]] = Field(
        default_factory=dict,
        description="USD per million tokens, [input, output], by model (symai's prices otherwise)",
    )
    bind_as: str | None = Field(default=None, alias="as")
    params: dict[str, Any] = Field(
        default_factory=dict,
        description="keyword arguments for the expression: given when each worker builds it "
        "and with each item's call",
    )
    error_handling: Literal["continue", "fail_fast"] = "continue"
    limit: int | None = Field(
        default=None,
        ge=1,
        description="a trial: run only the first N items, to try the expression and see what "
        "the whole job would cost (the job's 'trial'); retry it with a larger limit or none "
        "to go on, keeping the items run",
    )
    model: str | None = Field(
        default=None,
        description="a hosted model by symai's name for it, e.g. deepseek:deepseek-v4-flash: "
        "symai's engine for it answers this job's calls, its key from the service's "
        "environment (the provider's variable, e.g. DEEPSEEK_API_KEY); default: the "
        "service's engine",
    )

    @field_validator("model")
    @classmethod
    def _a_model_the_service_can_call(cls, model: str | None) -> str | None:
        from symbatcher.providers import key_variable, model_problem

        if model is None:
            return None
        if problem := model_problem(model):
            raise ValueError(problem)
        if not os.environ.get(variable := key_variable(model)):
            raise ValueError(
                f"the service has no {variable} in its environment, so it cannot call "
                f"{model!r}; its operator sets it where `symbatcher serve` starts"
            )
        return model


class RetryRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    settings: dict[str, Any] = Field(
        default_factory=dict,
        description="settings to change for the rest of the job, e.g. a larger max_cost",
    )


class JobRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    expression: str = Field(description="a registered expression name")
    items: list[Any] | None = Field(default=None, description="the items, inline")
    path: str | None = Field(default=None, description="or a data file in an allowed folder")
    settings: JobSettings = Field(default_factory=lambda: JobSettings())
    priority: int = 0
    timeout: float | None = Field(default=None, gt=0, description="seconds")


def job_view(job: Job) -> dict[str, Any]:
    progress = job.progress or {}
    return {
        "id": job.id,
        "expression": job.expression,
        "model": job.settings.get("model"),  # None: the service's engine
        "status": job.state,
        "priority": job.priority,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "cancel_requested": job.cancel_requested,
        "error": job.error,
        "total": job.total or 0,
        "progress": {
            key: progress.get(key)
            for key in ("done", "succeeded", "failed", "items_per_second", "eta_seconds")
        }
        | {"tokens": progress.get("tokens"), "cost": progress.get("cost")},
        # a trial's (settings.limit) end: the items not run, what they would cost
        "trial": progress.get("trial"),
    }


def create_app(
    queue: JobQueue,
    runs_root: str | Path,
    *,
    registry: ExpressionRegistry | None = None,
    token: str | None = None,
    data_dirs: list[str | Path] | None = None,
    max_body: int = MAX_BODY,
    event_interval: float = 0.5,
    default_engine: bool = True,
) -> FastAPI:
    """``default_engine``: whether the service has an engine for jobs that name no model
    (else such a job is refused at once, rather than failing when it runs)."""
    names = registry or default_registry
    secret = token if token is not None else os.environ.get(TOKEN_ENV) or None
    allowed = [Path(d).resolve() for d in (data_dirs or [])]
    root = Path(runs_root)
    app = FastAPI(title="symbatcher", description=__doc__)
    columns = CsvColumns()

    @app.middleware("http")
    async def limit_body(request: Request, call_next: Any) -> Any:
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > max_body:
            return JSONResponse({"detail": f"body over {max_body} bytes"}, status_code=413)
        return await call_next(request)

    def authorized(request: Request) -> None:
        if secret is None:
            return
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {secret}".encode()):
            raise HTTPException(401, "a bearer token is required", {"WWW-Authenticate": "Bearer"})

    guard = [Depends(authorized)]

    def refuse_without_engine(settings: JobSettings) -> None:
        """Refused when submitted: a job naming no model would fail only once it ran."""
        if settings.model is None and not default_engine:
            raise HTTPException(
                422,
                "this service has no engine of its own: name a model in settings.model "
                "(one whose provider's key the service has)",
            )

    def existing(job_id: str) -> Job:
        try:
            return queue.get(job_id)
        except JobNotFoundError:
            raise HTTPException(404, f"no job {job_id!r}") from None

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/jobs", status_code=201, dependencies=guard)
    def submit(request: JobRequest) -> dict[str, Any]:
        try:
            target = names.get(request.expression)
        except UnknownExpressionError as exc:
            raise HTTPException(422, str(exc)) from None
        if problem := build_problem(target, request.settings.params):
            raise HTTPException(
                422,
                f"{request.expression!r} cannot be built with the params given, as each "
                f"worker builds it ({problem}); pass them in settings.params",
            )
        refuse_without_engine(request.settings)
        if (request.items is None) == (request.path is None):
            raise HTTPException(422, "give either 'items' or 'path'")
        if request.items is not None and len(request.items) > MAX_ITEMS:
            raise HTTPException(413, f"more than {MAX_ITEMS} items")
        items = request.items if request.items is not None else _records(request.path, allowed)
        try:  # a file is read as it is stored: a bad record leaves no job
            job = queue.submit(
                request.expression,
                request.settings.model_dump(by_alias=True),
                items=items,
                priority=request.priority,
                timeout=request.timeout,
            )
        except DataFormatError as exc:
            raise HTTPException(422, str(exc)) from None
        return job_view(job)

    @app.get("/jobs", dependencies=guard)
    def list_jobs(
        status: JobState | None = None,
        limit: int = Query(50, ge=1, le=1000),
        offset: int = Query(0, ge=0),
    ) -> list[dict[str, Any]]:
        return [job_view(job) for job in queue.list(status, limit, offset)]

    @app.get("/jobs/{job_id}", dependencies=guard)
    def get_job(job_id: str) -> dict[str, Any]:
        view = job_view(existing(job_id))
        view["progress"]["models"] = _models(root / job_id)
        return view

    @app.delete("/jobs/{job_id}", dependencies=guard)
    def cancel_job(job_id: str, purge: bool = False) -> dict[str, Any]:
        """Cancel the job; with ``purge``, remove an ended one with its items and results."""
        existing(job_id)
        if not purge:
            return job_view(queue.cancel(job_id))
        try:
            view = job_view(queue.delete(job_id))
        except JobStateError as exc:
            raise HTTPException(409, str(exc)) from None
        shutil.rmtree(root / job_id, ignore_errors=True)
        return view | {"deleted": True}

    @app.post("/jobs/{job_id}/retry", dependencies=guard)
    def retry_job(job_id: str, request: RetryRequest | None = None) -> dict[str, Any]:
        job = existing(job_id)
        changes = request.settings if request is not None else {}
        if fixed := sorted(set(changes) & {"as", "bind_as", "params"}):
            raise HTTPException(422, f"{fixed[0]!r} cannot change on retry: items ran with it")
        try:  # the job's settings with the changes, checked as a submission's are
            merged = JobSettings.model_validate({**_submitted(job.settings), **changes})
        except ValidationError as exc:
            raise RequestValidationError(
                [{**error, "loc": ("body", "settings", *error["loc"])} for error in exc.errors()]
            ) from None
        refuse_without_engine(merged)
        tried = job.settings.get("limit")
        if (
            job.state == "succeeded"
            and tried is not None
            and merged.limit is not None
            and merged.limit <= tried
        ):
            raise HTTPException(
                422,
                f"the job was a trial of {tried} items: go on with a larger settings.limit, or "
                f"null for all of them",
            )
        dumped = merged.model_dump(by_alias=True)
        try:
            return job_view(queue.retry(job_id, {key: dumped[key] for key in changes}))
        except JobStateError as exc:
            raise HTTPException(409, str(exc)) from None

    @app.get("/jobs/{job_id}/results", dependencies=guard)
    def results(
        job_id: str,
        offset: int = Query(0, ge=0),
        limit: int = Query(1000, ge=1, le=100_000),
        fmt: Literal["jsonl", "csv"] = Query("jsonl", alias="format"),
    ) -> StreamingResponse:
        existing(job_id)
        if fmt == "csv":
            return StreamingResponse(
                _csv_lines(root / job_id, offset, limit, columns),
                media_type="text/csv; charset=utf-8",
            )
        return StreamingResponse(
            _result_lines(root / job_id, offset, limit), media_type="application/x-ndjson"
        )

    @app.get("/jobs/{job_id}/events", dependencies=guard)
    async def events(job_id: str) -> StreamingResponse:
        existing(job_id)
        return StreamingResponse(
            _events(queue, job_id, event_interval), media_type="text/event-stream"
        )

    @app.get("/stats", dependencies=guard)
    def stats() -> dict[str, Any]:
        return {
            "jobs": queue.counts(),
            "expressions": names.names(),
            "default_engine": default_engine,  # false: every job names its model
        }

    return app


def _submitted(settings: dict[str, Any]) -> dict[str, Any]:
    """Of a job's stored settings, those a submission gives (not the queue's own marks)."""
    known = {field.alias or name for name, field in JobSettings.model_fields.items()}
    return {key: value for key, value in settings.items() if key in known}


def _records(path: str | None, allowed: list[Path]) -> Iterator[Any]:
    """The records of a server-side file, read lazily. A relative path is taken in the
    allowed folders (the first that has it), never in the server's working directory."""
    from symbatcher.data import read

    assert path is not None
    if not allowed:
        raise HTTPException(403, "this server reads no files (start it with --data-dir)")
    given = Path(path)
    found = [given.resolve()] if given.is_absolute() else [(d / given).resolve() for d in allowed]
    inside = [t for t in found if any(t.is_relative_to(folder) for folder in allowed)]
    if not inside:
        raise HTTPException(403, f"{path} is not in a folder this server reads from")
    target = next((t for t in inside if t.is_file()), inside[0])
    return read(target)


def _result_lines(run_dir: Path, offset: int, limit: int) -> Iterator[str]:
    """A page of results from item ``offset`` on, read a page of the store at a time: a
    deep page costs what the first does, and a slow client keeps no read open."""
    from symbatcher.store.export import result_row
    from symbatcher.store.pages import paged
    from symbatcher.store.sqlite import SQLiteStore

    store = SQLiteStore(run_dir)
    if not store.path.is_file():
        return
    for record in itertools.islice(paged(store, (), offset), limit):
        yield json.dumps(result_row(record), ensure_ascii=False) + "\n"


def _models(run_dir: Path) -> dict[str, dict[str, Any]]:
    """Each model's calls, tokens and cost in the job so far (costliest first)."""
    from symbatcher.store.base import models_json
    from symbatcher.store.sqlite import SQLiteStore

    store = SQLiteStore(run_dir)
    if not store.path.is_file():
        return {}
    return models_json(store.usage_by_model())


def _csv_lines(run_dir: Path, offset: int, limit: int, columns: CsvColumns) -> Iterator[str]:
    """A page of results as a CSV with the run's columns (as ``symbatcher export`` writes
    them), its header on every page."""
    from symbatcher.store.export import csv_lines
    from symbatcher.store.sqlite import SQLiteStore

    store = SQLiteStore(run_dir)
    if store.path.is_file():
        yield from csv_lines(store, offset, limit, columns.of(store))


class CsvColumns:
    """Each job's CSV columns, found by a pass over its store and kept while the store's
    files are unchanged: a client paging through a job of millions would otherwise have
    the whole job read once per page. The most recently asked ``size`` jobs are kept."""

    def __init__(self, size: int = 64) -> None:
        self._size = size
        self._tables: OrderedDict[Path, tuple[Any, CsvTable]] = OrderedDict()
        self._lock = threading.Lock()

    def of(self, store: SQLiteStore) -> CsvTable:
        from symbatcher.store.export import CsvTable

        stamp = _stamp(store.path)  # before the pass: a write during it is seen next time
        with self._lock:
            kept = self._tables.get(store.path)
            if kept is not None and kept[0] == stamp:
                self._tables.move_to_end(store.path)
                return kept[1]
        table = CsvTable.of(store)
        with self._lock:
            self._tables[store.path] = (stamp, table)
            self._tables.move_to_end(store.path)
            while len(self._tables) > self._size:
                self._tables.popitem(last=False)
        return table


def _stamp(path: Path) -> tuple[tuple[int, int] | None, ...]:
    """When and how large the database and its write-ahead log are: any write changes it."""
    stamps: list[tuple[int, int] | None] = []
    for file in (path, path.with_name(path.name + "-wal")):
        try:
            stat = file.stat()
        except FileNotFoundError:
            stamps.append(None)
        else:
            stamps.append((stat.st_mtime_ns, stat.st_size))
    return tuple(stamps)


async def _events(queue: JobQueue, job_id: str, interval: float) -> AsyncIterator[str]:
    last: str | None = None
    while True:
        job = await asyncio.to_thread(queue.get, job_id)
        view = json.dumps(job_view(job))
        if view != last:
            last = view
            yield f"event: progress\ndata: {view}\n\n"
        if job.state in ENDED:
            yield f"event: end\ndata: {json.dumps({'status': job.state})}\n\n"
            return
        await asyncio.sleep(interval)  # the queue has no notifications: look again
