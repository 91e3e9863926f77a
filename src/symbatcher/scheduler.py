"""BatchScheduler: the Expression users call to run another Expression over a dataset."""

from __future__ import annotations

import inspect
import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from symbatcher import engine_lookup, http_clients, templates
from symbatcher.checks import env_flag, positive_int
from symbatcher.dispatch import DEFAULT_LINGER, DEFAULT_LINGER_FRACTION
from symbatcher.errors import DatasetError, ExpressionBuildError
from symbatcher.hooks.base import Hook
from symbatcher.hooks.chain import HookChain
from symbatcher.results import RunResults, RunStats
from symbatcher.run import ErrorHandling, Run
from symbatcher.store.codec import dumps, fingerprint
from symbatcher.symai_setup import import_symai

import_symai()

from symai import Expression  # noqa: E402

logger = logging.getLogger("symbatcher")

DEFAULT_WORKERS = 16
DEFAULT_BATCH_SIZE = 5


class BatchScheduler(Expression):  # type: ignore[misc]
    """Runs an Expression over a dataset and batches the engine calls its items make.

    Every engine call an item's expression makes through symai's ``EngineRepository``
    (default engine: ``neurosymbolic``) is queued and released to the engine together with
    the calls of other items; each item's worker resumes when its answer is back, so its
    later (dependent) calls follow. Results come back in dataset order.

    ``engines`` names the registry's engines to bind, or maps a name to an engine the run
    brings itself, an engine instance or a hosted model by symai's name for it
    (``{"neurosymbolic": "deepseek:deepseek-v4-flash"}``, its key from the provider's
    variable, ``DEEPSEEK_API_KEY``): symai's registry is left alone and only the run's own
    threads get that engine, so runs on different models can go on in one process.

    Run options live here rather than in :meth:`forward`, whose extra keyword arguments
    all go to the expression. ``hooks`` layer further concerns on every run, e.g.
    ``[Checkpoint("runs/x"), Budget(5.0), Progress(), Retry(attempts=4)]``.

    With ``http_defaults`` (on), a run whose engines talk HTTP (symai's provider engines)
    also gets :class:`CallRetry` and ``RateLimit.from_env()`` unless ``hooks`` has them:
    failed requests are retried per call, limits from the environment are kept, and 429s
    slow the run down to what the provider admits.

    With ``cache_templates`` (on unless ``SYMBATCHER_CACHE_TEMPLATES=0``), symai's chat
    engines compile their system-prompt template once per run instead of once per query
    (see :mod:`symbatcher.templates`): the same prompts at a fraction of the client CPU.
    With ``client_per_thread`` (on unless ``SYMBATCHER_CLIENT_PER_THREAD=0``), each worker
    sends an HTTP engine's requests on its own client instead of symai's shared one, whose
    connection pool costs CPU per request in proportion to its size (see
    :mod:`symbatcher.http_clients`).
    With ``fast_lookup`` (on unless ``SYMBATCHER_FAST_LOOKUP=0``), symai's per-query search
    of the calling thread's frames for an active ``DynamicEngine`` skips locals of built-in
    types, which can never be one (see :mod:`symbatcher.engine_lookup`): the same answer
    for less CPU per query.
    """

    def __init__(
        self,
        engines: Iterable[str] | str | Mapping[str, Any] = ("neurosymbolic",),
        *,
        linger: float = DEFAULT_LINGER,
        linger_fraction: float | None = DEFAULT_LINGER_FRACTION,
        max_inflight_batches: int | None = None,
        window: int | None = None,
        error_handling: ErrorHandling = "continue",
        hooks: Iterable[Hook] = (),
        http_defaults: bool = True,
        cache_templates: bool | None = None,
        client_per_thread: bool | None = None,
        fast_lookup: bool | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._sb_hooks = list(hooks)
        HookChain(self._sb_hooks)  # a bad hook fails here, not at the first run
        names = (engines,) if isinstance(engines, str) else tuple(engines)
        if not names or not all(isinstance(n, str) and n for n in names):
            raise ValueError(f"engines must be non-empty engine names, got {engines!r}")
        own = own_engines(engines) if isinstance(engines, Mapping) else {}
        if linger < 0:
            raise ValueError(f"linger must be >= 0 seconds, got {linger!r}")
        if linger_fraction is not None and linger_fraction < 0:
            raise ValueError(f"linger_fraction must be >= 0 or None, got {linger_fraction!r}")
        if max_inflight_batches is not None:
            positive_int("max_inflight_batches", max_inflight_batches)
        if window is not None:
            positive_int("window", window)
        if error_handling not in ("continue", "fail_fast"):
            raise ValueError(
                f"error_handling must be 'continue' or 'fail_fast', got {error_handling!r}"
            )
        self._sb_engines = tuple(dict.fromkeys(names))
        self._sb_own = own
        self._sb_linger = float(linger)
        self._sb_linger_fraction = linger_fraction
        self._sb_max_inflight = max_inflight_batches
        self._sb_window = window
        self._sb_error_handling: ErrorHandling = error_handling
        self._sb_http_defaults = http_defaults
        self._sb_cache_templates = env_flag(templates.ENV_NAME, given=cache_templates)
        self._sb_client_per_thread = env_flag(http_clients.ENV_NAME, given=client_per_thread)
        self._sb_fast_lookup = env_flag(engine_lookup.ENV_NAME, given=fast_lookup)
        self._sb_last: Run | None = None

    # ---------------------------------------------------------------- public API
    def forward(
        self,
        expr: Any,
        num_workers: int = DEFAULT_WORKERS,
        dataset: Iterable[Any] | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        **kwargs: Any,
    ) -> RunResults:
        """Run ``expr(input=item, **kwargs)`` for every item; outcomes in dataset order.

        A failed item's slot holds an :class:`~symbatcher.ItemError`. If the dataset itself
        raises, the items taken before it still finish and the raised
        :class:`~symbatcher.DatasetError` carries them as ``.results``.
        """
        run = self._new_run(expr, dataset, num_workers, batch_size, kwargs)
        try:
            slots = run.collect()
        except DatasetError as exc:
            done = run.collected
            exc.results = RunResults([done[i] for i in sorted(done)], run.stats)  # type: ignore[attr-defined]
            raise
        return RunResults([slots[i] for i in range(len(slots))], run.stats)

    def imap(
        self,
        expr: Any,
        dataset: Iterable[Any],
        num_workers: int = DEFAULT_WORKERS,
        batch_size: int = DEFAULT_BATCH_SIZE,
        **kwargs: Any,
    ) -> RunStream:
        """Stream ``(index, outcome)`` pairs as items finish; memory stays bounded.

        The run starts at the first ``next()``. Stop early with ``close()`` (or leave a
        ``with`` block); either way the threads are joined and the engines unbound.
        """
        return RunStream(self._new_run(expr, dataset, num_workers, batch_size, kwargs))

    def _stream(
        self,
        expr: Any,
        dataset: Iterable[Any],
        num_workers: int,
        batch_size: int,
        kwargs: dict[str, Any],
        run_context: dict[str, Any],
        indexed: bool = False,
    ) -> RunStream:
        """``imap`` with run settings for facades (BatchManager, the job queue)."""
        run = self._new_run(expr, dataset, num_workers, batch_size, kwargs, run_context, indexed)
        return RunStream(run)

    def _http_hooks(self) -> list[Hook]:
        """The call policies a run against HTTP engines gets unless it brings its own."""
        if not self._sb_http_defaults:
            return []
        own = self._sb_own
        if not any(_talks_http(own[n] if n in own else _registered(n)) for n in self._sb_engines):
            return []
        from symbatcher.hooks.rate_limit import RateLimit
        from symbatcher.hooks.retry import CallRetry

        extra: list[Hook] = []
        if not any(isinstance(h, CallRetry) for h in self._sb_hooks):
            extra.append(CallRetry())
        if not any(isinstance(h, RateLimit) for h in self._sb_hooks):
            extra.append(RateLimit.from_env())
        return extra

    @property
    def stats(self) -> RunStats:
        """Figures of the latest run started by this scheduler (live while it runs)."""
        return self._sb_last.stats if self._sb_last is not None else RunStats()

    # ----------------------------------------------------------------- plumbing
    def _new_run(
        self,
        expr: Any,
        dataset: Iterable[Any] | None,
        num_workers: int,
        batch_size: int,
        kwargs: dict[str, Any],
        run_context: dict[str, Any] | None = None,
        indexed: bool = False,
    ) -> Run:
        run_context = run_context or {}
        positive_int("num_workers", num_workers)
        positive_int("batch_size", batch_size)
        if dataset is None:
            raise TypeError("dataset is required: pass an iterable of items")
        if isinstance(dataset, str | bytes) or not isinstance(dataset, Iterable):
            raise TypeError(
                f"dataset must be an iterable of items (list, generator, ...), "
                f"got {type(dataset).__name__}"
            )
        _refuse_tables(dataset)
        make, setup = _expression_factory(expr, kwargs)
        chain = HookChain([*self._http_hooks(), *self._sb_hooks])
        context = {
            **run_context,
            "expression_fingerprint": expression_fingerprint(expr, kwargs),
            "expression_settings": expression_settings(expr),
        }
        run = Run(
            make,
            dataset,
            setup=setup,
            num_workers=num_workers,
            batch_size=batch_size,
            call_kwargs=kwargs,
            engines=self._sb_engines,
            own_engines=self._sb_own,
            linger=self._sb_linger,
            linger_fraction=self._sb_linger_fraction,
            max_inflight_batches=self._sb_max_inflight,
            window=self._sb_window or 2 * num_workers,
            error_handling=self._sb_error_handling,
            cache_templates=self._sb_cache_templates,
            client_per_thread=self._sb_client_per_thread,
            fast_lookup=self._sb_fast_lookup,
            hooks=chain,
            context=context,
            indexed=indexed,
        )
        self._sb_last = run
        return run


class RunStream(Iterator[tuple[int, Any]]):
    """The outcomes of a streaming run, as they complete; ``.stats`` is live."""

    def __init__(self, run: Run) -> None:
        self._run = run
        self._outcomes: Iterator[tuple[int, Any]] | None = None
        self._lock = threading.Lock()

    def __next__(self) -> tuple[int, Any]:
        if self._outcomes is None:
            with self._lock:
                if self._outcomes is None:
                    self._outcomes = self._run.outcomes()
        return next(self._outcomes)

    def __iter__(self) -> RunStream:
        return self

    def close(self) -> None:
        if self._outcomes is not None:
            close = getattr(self._outcomes, "close", None)
            if close is not None:
                close()
        self._run.close()

    def __enter__(self) -> RunStream:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    @property
    def stats(self) -> RunStats:
        return self._run.stats


def _expression_factory(
    expr: Any, kwargs: dict[str, Any]
) -> tuple[Callable[[int], Any], Callable[[], Callable[[], None]] | None]:
    """A callable giving each worker its expression, and a setup for a shared one.

    A class gets one instance per worker (symai expressions keep per-call state, so sharing
    one across threads is unsafe); it is built with those of ``kwargs`` its ``__init__``
    names. The first instance is built here, so a class that cannot be built fails before
    any thread starts. An instance is shared by all workers as given.

    Either way the nested expressions are detached from the root for the run: symai would
    otherwise append every nested result to ``root.metadata.root_link`` (kilobytes per call,
    and racy when workers share a root). A shared instance gets its flags back afterwards.
    """
    if isinstance(expr, type):
        built_with = init_kwargs(expr, kwargs)
        try:
            first = expr(**built_with)
        except Exception as exc:
            raise ExpressionBuildError(
                f"could not instantiate {expr.__qualname__}: {type(exc).__name__}: {exc}"
            ) from exc
        if not callable(first):
            raise TypeError(f"{expr.__qualname__} instances are not callable")
        _detach_nested(first)

        def make(worker: int) -> Any:
            if worker == 0:
                return first
            instance = expr(**built_with)
            _detach_nested(instance)
            return instance

        return make, None
    if not callable(expr):
        raise TypeError(f"expr must be an Expression class or instance, got {type(expr).__name__}")
    return (lambda _worker: expr), (lambda: _detach_nested(expr))


def _refuse_tables(dataset: Any) -> None:
    """A mapping or a data frame iterates its keys or its columns, never what a user meant
    by its items: say how to pass its rows instead of running the column names."""
    if isinstance(dataset, Mapping):
        raise TypeError(
            f"dataset is a {type(dataset).__name__}, whose iteration gives its keys: pass "
            f"list(dataset.values()) or list(dataset.items())"
        )
    if type(dataset).__name__ == "DataFrame":  # pandas and polars, without importing them
        raise TypeError(
            "dataset is a DataFrame, whose iteration gives its column names: pass its rows, "
            "df.to_dict('records') (pandas) or df.iter_rows(named=True) (polars)"
        )


def expression_fingerprint(expr: Any, kwargs: dict[str, Any]) -> str:
    """Which expression a run runs, with which parameters: a resumed run must match."""
    cls = expr if isinstance(expr, type) else type(expr)
    name = f"{cls.__module__}.{cls.__qualname__}"
    return f"{name}:{fingerprint(dumps(kwargs))}"


def expression_settings(expr: Any) -> dict[str, Any] | None:
    """An instance's plain public attributes (text, numbers, flags): how it was configured,
    which its class and the run's kwargs do not show. None for a class (its kwargs do)."""
    if isinstance(expr, type):
        return None
    plain = (str, int, float, bool, type(None))
    attributes = getattr(expr, "__dict__", {})
    return {k: v for k, v in sorted(attributes.items()) if k[0] != "_" and isinstance(v, plain)}


def _detach_nested(root: Any) -> Callable[[], None]:
    """Set ``metadata.detach`` on every nested expression of ``root``; return the undo."""
    saved: list[tuple[Any, Any]] = []
    seen: set[int] = {id(root)}
    stack = list(getattr(root, "_children", None) or [])
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        metadata = getattr(node, "_metadata", None)
        if isinstance(node, Expression) and metadata is not None:
            saved.append((metadata, getattr(metadata, "detach", None)))
            metadata.detach = True
        stack.extend(getattr(node, "_children", None) or [])

    def undo() -> None:
        for metadata, value in saved:
            metadata.detach = value

    return undo


def build_problem(expr: Any, kwargs: dict[str, Any]) -> str | None:
    """Why the workers could not build a class ``expr`` with a run's ``kwargs``, told from
    its ``__init__``'s signature without building it (symai's ``Symbol.__new__`` takes
    anything, hiding what is needed); None when they can, or when it cannot be told."""
    if not isinstance(expr, type):
        return None
    try:
        inspect.signature(expr.__init__).bind(None, **init_kwargs(expr, kwargs))  # type: ignore[misc]
    except TypeError as exc:
        return str(exc)
    except ValueError:
        return None  # no signature to read: building it will tell
    return None


def init_kwargs(cls: type, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Those of a run's ``kwargs`` that ``cls.__init__`` names: the others go to the calls."""
    try:
        init: Any = cls.__init__  # type: ignore[misc]
        params = inspect.signature(init).parameters
    except (TypeError, ValueError):
        return {}
    named = {
        name
        for name, p in params.items()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and name != "self"
    }
    return {k: v for k, v in kwargs.items() if k in named}


def own_engines(engines: Mapping[str, Any]) -> dict[str, Any]:
    """The engines a run brings by name: an engine as given, a model name as symai's
    engine for it (built now, so a misspelt model or a missing key fails here)."""
    from symbatcher.providers import hosted_engine

    own: dict[str, Any] = {}
    for name, engine in engines.items():
        if engine is None or isinstance(engine, type):
            raise TypeError(
                f"engines[{name!r}] must be an engine instance or a model name such as "
                f"'deepseek:deepseek-v4-flash', got {engine!r}"
            )
        own[name] = hosted_engine(engine) if isinstance(engine, str) else engine
    return own


def _registered(name: str) -> Any:
    """The engine registered as ``name``; None where it cannot be built (the run names
    it with a clear error when it binds)."""
    from symai.functional import EngineRepository

    try:
        return EngineRepository.get(name)
    except Exception:
        return None


def _talks_http(engine: Any) -> bool:
    """Whether ``engine`` is one of symai's HTTP provider engines (they take
    ``client_max_retries``)."""
    return hasattr(engine, "client_max_retries") and hasattr(engine, "transport_client")
