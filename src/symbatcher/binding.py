"""The executor callback: what ``EngineRepository`` hands out while runs are active.

For each bound engine name, one :class:`EngineBinding` replaces the real engine in symai's
registry. Its ``executor_callback`` (also its ``__call__``, which is what symai's
``_execute_query`` invokes) routes a call to the run that the calling thread works for;
a thread that belongs to no run (the main thread, another library's pool, a thread the
expression started itself) goes straight to the real engine. Every other attribute --
``prepare``, ``preview``, ``id``, settings -- is the real engine's. A thread an item
started joins its run by running its work under :func:`symbatcher.carry.carry`; without
that, the first such call of a binding is logged, since it escapes the run's batching,
cost, budget and checkpoint.

Bindings are reference-counted, so two runs at once (or a run nested in another run's
expression) share one binding; the last run to finish puts the real engine back, but
only if the registry still holds our binding (someone may have registered another engine
meanwhile, which we leave alone).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING, Any

from symbatcher.errors import EngineNotAvailableError
from symbatcher.executors import Answer, Executor, executor_for
from symbatcher.symai_setup import import_symai

if TYPE_CHECKING:
    from symbatcher.dispatch import Dispatcher
    from symbatcher.hooks.chain import HookChain
    from symbatcher.overrides import EngineOverride

logger = logging.getLogger("symbatcher")

_thread_state = threading.local()
_registry_lock = threading.Lock()
_bound: dict[str, tuple[EngineBinding, int]] = {}


class RunRoute:
    """What a run's worker threads carry: the run's dispatcher, the engines it binds, the
    hooks that wrap each engine call (cost, raw answers), if any, what a DynamicEngine
    block's engine is given for each call (``block_settings``: a worker's own HTTP client,
    which the bound engines have for the whole run), and the bindings of the engines the
    run brought itself (``own``: symai's lookup hands them out on the run's threads only)."""

    __slots__ = ("block_settings", "dispatcher", "engines", "hooks", "own")

    def __init__(
        self,
        dispatcher: Dispatcher,
        engines: frozenset[str],
        hooks: HookChain | None = None,
        block_settings: tuple[EngineOverride, ...] = (),
        own: dict[str, EngineBinding] | None = None,
    ) -> None:
        self.dispatcher = dispatcher
        self.engines = engines
        self.hooks = hooks if hooks is not None and hooks.wraps_calls else None
        self.block_settings = block_settings
        self.own = own or {}

    def submit(self, name: str, binding: EngineBinding, argument: Any) -> Answer:
        if binding.dynamic and self.block_settings:
            with ExitStack() as stack:
                for setting in self.block_settings:
                    stack.enter_context(setting.held(binding.engine))
                return self._submit(name, binding, argument)
        return self._submit(name, binding, argument)

    def _submit(self, name: str, binding: EngineBinding, argument: Any) -> Answer:
        hooks, lane = self.hooks, binding.lane
        if hooks is None:
            return self.dispatcher.submit(lane, binding.executor, argument)
        answer: Answer = hooks.run_call(
            name,
            binding.engine,
            argument,
            lambda: self.dispatcher.submit(lane, binding.executor, argument),
        )
        return answer


def current_route() -> RunRoute | None:
    route: RunRoute | None = getattr(_thread_state, "route", None)
    return route


def run_worker() -> bool:
    """Whether the calling thread is one of a run's own workers, not a thread an item
    carried its run into (see :mod:`symbatcher.carry`)."""
    return current_route() is not None and not getattr(_thread_state, "carried", False)


@contextmanager
def routed_to(route: RunRoute, carried: bool = False) -> Iterator[None]:
    """Mark the current thread as a worker of a run (``carried``: a thread an item of
    it started) for the duration of the block."""
    previous = current_route(), getattr(_thread_state, "carried", False)
    _thread_state.route, _thread_state.carried = route, carried
    try:
        yield
    finally:
        _thread_state.route, _thread_state.carried = previous


class EngineBinding:
    """Stands in for one engine in symai's registry and routes calls to their run."""

    def __init__(
        self, name: str, engine: Any, executor: Executor | None = None, lane: str | None = None
    ) -> None:
        object.__setattr__(self, "_sb_name", name)
        object.__setattr__(self, "_sb_engine", engine)
        object.__setattr__(self, "_sb_executor", executor or executor_for(engine))
        object.__setattr__(self, "_sb_lane", lane or name)  # the dispatcher's queue for it
        object.__setattr__(self, "_sb_dynamic", False)  # a DynamicEngine block's engine
        # threads that started a run with this binding: their own calls (a program's,
        # between the results it consumes) are plainly not an item's
        object.__setattr__(self, "_sb_owners", set())
        object.__setattr__(self, "_sb_warned", False)

    @property
    def engine(self) -> Any:
        """The real engine behind this binding."""
        return self._sb_engine

    @property
    def executor(self) -> Executor:
        executor: Executor = self._sb_executor
        return executor

    @property
    def lane(self) -> str:
        lane: str = self._sb_lane
        return lane

    @property
    def dynamic(self) -> bool:
        """Whether it stands in for a DynamicEngine block's engine (made per lookup), not
        for an engine the run bound in the registry."""
        dynamic: bool = self._sb_dynamic
        return dynamic

    def executor_callback(self, argument: Any) -> Answer:
        """Queue the call in its run and block until its answer; outside runs, call directly."""
        route = current_route()
        if route is None or self._sb_name not in route.engines:
            if route is None and not self._sb_warned:
                self._foreign_call()
            return self.executor.call_one(argument)
        return route.submit(self._sb_name, self, argument)

    def _foreign_call(self) -> None:
        """A thread that is no run's called the engine while a run has it bound: most
        likely one an item started, whose calls then escape the run. Said once."""
        thread = threading.current_thread()
        if thread.ident in self._sb_owners:
            return
        object.__setattr__(self, "_sb_warned", True)
        logger.warning(
            "symbatcher: engine %r was called from thread %r, which is none of the run's "
            "workers: the call goes to the engine directly, not batched and not seen by the "
            "run (its cost, budget, checkpoint, retries). If the run's expression started "
            "that thread, have it run its work under symbatcher.carry(...)",
            self._sb_name,
            thread.name,
        )

    def __call__(self, argument: Any) -> Answer:
        return self.executor_callback(argument)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sb_engine, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._sb_engine, name, value)

    def __repr__(self) -> str:
        return f"<EngineBinding {self._sb_name!r} -> {self._sb_engine!r}>"


#: the names under which symai's ``EngineRepository.get`` hands out a DynamicEngine's engine
DYNAMIC_NAMES = ("neurosymbolic", "search")


def dynamic_binding(engine: Any) -> Any:
    """What a run's thread gets for the engine of a ``with DynamicEngine(...)`` block: a
    binding that makes its calls the item's, like the bound engine's (batched or run as
    the engine allows, costed at its own model's price, budgeted, retried), where symai's
    lookup would hand the engine out past the registry and past the run. Other threads get
    the engine itself.

    symai builds a new engine each time a block is entered, so the binding is made per
    lookup, and calls of one kind of engine and model share a queue (a plain engine's
    calls each run on their own anyway); a list-taking one gets a queue per instance.
    """
    if current_route() is None or isinstance(engine, EngineBinding):
        return engine
    try:
        name = engine.id()
    except Exception:
        name = None
    if name not in DYNAMIC_NAMES:
        name = DYNAMIC_NAMES[0]
    executor = executor_for(engine)
    model = getattr(engine, "model", None)
    kind = type(engine).__qualname__
    if executor.caller_runs:
        lane = f"{name} (dynamic {kind} {model})"
    else:
        lane = f"{name} (dynamic {kind} at {id(engine):#x})"
    binding = EngineBinding(name, engine, executor, lane)
    object.__setattr__(binding, "_sb_warned", True)  # made for a run's thread only
    object.__setattr__(binding, "_sb_dynamic", True)
    return binding


def _repository() -> Any:
    import_symai()
    from symai.functional import EngineRepository

    return EngineRepository


def available_engine(name: str) -> Any:
    """The engine symai's EngineRepository has under ``name``, or an error that says how
    to configure or register one."""
    try:
        return _repository().get(name)
    except (ValueError, ImportError) as exc:
        msg = (
            f"no engine named {name!r} is available in symai's EngineRepository ({exc}). "
            f"Configure it in symai.config.json (e.g. NEUROSYMBOLIC_ENGINE_MODEL and its "
            f"API key) or register one with EngineRepository.register({name!r}, engine)."
        )
        raise EngineNotAvailableError(msg) from exc


def _acquire(name: str) -> EngineBinding:
    repo = _repository()
    with _registry_lock:
        if name in _bound:
            binding, count = _bound[name]
            _bound[name] = (binding, count + 1)
            binding._sb_owners.add(threading.get_ident())
            return binding
        engine = available_engine(name)
        # One engine under two names is still one engine: the bindings share its executor,
        # and with it the slots it declares (else each name would get the full capacity).
        shared = next((b.executor for b, _ in _bound.values() if b.engine is engine), None)
        binding = EngineBinding(name, engine, shared)
        binding._sb_owners.add(threading.get_ident())
        repo.register(name, binding, allow_engine_override=True)
        _bound[name] = (binding, 1)
        return binding


def _release(name: str) -> None:
    repo = _repository()
    with _registry_lock:
        binding, count = _bound[name]
        if count > 1:
            _bound[name] = (binding, count - 1)
            return
        del _bound[name]
        if repo()._engines.get(name) is binding:
            repo.register(name, binding.engine, allow_engine_override=True)
        else:
            logger.warning(
                "engine %r was replaced in EngineRepository during a run; leaving the new one",
                name,
            )


def own_binding(name: str, engine: Any, executor: Executor | None = None) -> EngineBinding:
    """A binding for an engine a run brought itself (``BatchScheduler({name: engine})``):
    not in symai's registry, so only the run's threads reach it (see
    :func:`symbatcher.engine_lookup.own_engines_routed`), and its calls queue on the lane of
    ``name`` like a bound engine's."""
    binding = EngineBinding(name, engine, executor)
    object.__setattr__(binding, "_sb_warned", True)  # no thread but the run's has it
    return binding


@contextmanager
def bound_engines(
    names: tuple[str, ...], own: Mapping[str, Any] | None = None
) -> Iterator[dict[str, EngineBinding]]:
    """Bind each named engine for the block, the registry's or, for a name in ``own``, the
    run's own; the real engines are back afterwards, always."""
    own = own or {}
    acquired: list[str] = []
    try:
        bindings: dict[str, EngineBinding] = {}
        executors: dict[int, Executor] = {}  # one engine under two names: one executor
        for name in names:
            if name in own:
                engine = own[name]
                bindings[name] = own_binding(name, engine, executors.get(id(engine)))
                executors[id(engine)] = bindings[name].executor
                continue
            bindings[name] = _acquire(name)
            acquired.append(name)
        yield bindings
    finally:
        for name in reversed(acquired):
            _release(name)
