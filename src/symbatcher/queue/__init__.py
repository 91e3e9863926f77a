"""A persistent job queue: jobs (a batch run each) in SQLite, claimed with leases."""

from symbatcher.queue.jobs import Job, JobQueue, JobState, JobStateError
from symbatcher.queue.registry import ExpressionRegistry, register, registry
from symbatcher.queue.retention import Retention

__all__ = [
    "ExpressionRegistry",
    "Job",
    "JobQueue",
    "JobState",
    "JobStateError",
    "Retention",
    "register",
    "registry",
]
