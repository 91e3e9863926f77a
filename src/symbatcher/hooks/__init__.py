"""Concerns layered on a run as Expressions: state, cost, budget, progress, retry, output."""

from symbatcher.hooks.base import CallContext, CallRecord, Hook, ItemContext, Restored, RunContext
from symbatcher.hooks.budget import BUDGET_REACHED, Budget
from symbatcher.hooks.checkpoint import Checkpoint
from symbatcher.hooks.cost import Cost, PricingError
from symbatcher.hooks.progress import Progress, ProgressEvent
from symbatcher.hooks.rate_limit import RateLimit
from symbatcher.hooks.retry import (
    Backoff,
    CallRetry,
    Retry,
    is_rate_limit,
    is_transient,
    retry_after,
)
from symbatcher.hooks.save_results import SaveResults

__all__ = [
    "BUDGET_REACHED",
    "Backoff",
    "Budget",
    "CallContext",
    "CallRecord",
    "CallRetry",
    "Checkpoint",
    "Cost",
    "Hook",
    "ItemContext",
    "PricingError",
    "Progress",
    "ProgressEvent",
    "RateLimit",
    "Restored",
    "Retry",
    "RunContext",
    "SaveResults",
    "is_rate_limit",
    "is_transient",
    "retry_after",
]
