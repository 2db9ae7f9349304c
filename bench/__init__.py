"""Benchmarks of the engine, each a ratio against a bare Temporal floor measured in the same run.

Run them with `achievements bench [throughput|cpu|latency|parked|report|timeskip|all]` or
`python -m bench ...`; see docs/performance.md.
"""
