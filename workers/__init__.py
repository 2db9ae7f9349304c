"""Worker processes: configuration, Temporal connection, task queues and telemetry."""
