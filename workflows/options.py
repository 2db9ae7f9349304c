"""Timeouts and retry policies of every activity the workflows call."""

from __future__ import annotations

from datetime import timedelta

from temporalio.common import RetryPolicy

# Calls to the registry and exchange: retried with backoff through outages for up to a day;
# validation errors are raised non-retryable by the clients and end the retries at once.
EXTERNAL_TIMEOUT = timedelta(seconds=30)
EXTERNAL_SCHEDULE_TO_CLOSE = timedelta(days=1)
EXTERNAL_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=5),
    non_retryable_error_types=["ValidationError"],
)

# Appending to PostgreSQL: short, idempotent, retried until the database is back.
PROJECTION_TIMEOUT = timedelta(seconds=15)
PROJECTION_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=1),
)
