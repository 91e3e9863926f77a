"""A run as ``command.json`` describes it: the expression, its hooks, the scheduler;
shared by ``run`` and ``retry``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from symbatcher.cli.progress import progress_hook
from symbatcher.dispatch import DEFAULT_LINGER
from symbatcher.expression_loader import bound_expression, load_expression


def hooks_for(
    run_dir: Path, command: dict[str, Any], progress: str, retry_failed: bool
) -> list[Any]:
    """The hooks the command asks for, Checkpoint first (``run`` reads whether it began)."""
    from symbatcher.hooks import Budget, Checkpoint, Cost, Retry
    from symbatcher.pricing import FREE

    engine = command.get("engine") or {}
    hooks: list[Any] = [
        Checkpoint(run_dir, retry_failed=retry_failed, force=command.get("force", False)),
        Cost(command.get("prices"), default=FREE if engine.get("url") else None),
    ]
    if command.get("max_cost") is not None:
        hooks.append(Budget(command["max_cost"]))
    if command.get("retries", 0) > 1:
        hooks.append(Retry(command["retries"]))
    if any(engine.get(k) is not None for k in ("rpm", "tpm", "max_concurrency")):
        from symbatcher.hooks import RateLimit

        hooks.append(
            RateLimit(
                rpm=engine.get("rpm"),
                tpm=engine.get("tpm"),
                max_concurrency=engine.get("max_concurrency"),
            )
        )
    hooks.append(progress_hook(progress))
    return hooks


def execute(
    run_dir: Path,
    command: dict[str, Any],
    dataset: Any,
    total: int | None,
    progress: str,
    *,
    indexed: bool = False,
    hooks: list[Any] | None = None,
) -> Any:
    """The run to its end, every outcome in the run's store; its figures."""
    from symbatcher.scheduler import BatchScheduler

    params = command.get("params") or {}
    # import_dirs since 0.7.4, cwd since 0.7.3; before, the current directory
    import_dirs = command.get("import_dirs") or ([command["cwd"]] if "cwd" in command else None)
    target = load_expression(command["expression"], import_dirs, params)
    expr = bound_expression(target, command.get("as"), params)
    if hooks is None:
        hooks = hooks_for(run_dir, command, progress, retry_failed=indexed)
    engine = command.get("engine") or {}
    scheduler = BatchScheduler(
        engine.get("names") or ["neurosymbolic"],
        hooks=hooks,
        error_handling=command["error_handling"],
        max_inflight_batches=engine.get("max_inflight_batches"),
        linger=engine.get("linger", DEFAULT_LINGER),
    )
    context: dict[str, Any] = {"replay_restored": False}
    if total is not None:
        context["total"] = total
    stream = scheduler._stream(
        expr, dataset, command["workers"], command["batch_size"], params, context, indexed=indexed
    )
    with stream:
        for _ in stream:
            pass  # outcomes are in the run's store
    return stream.stats
