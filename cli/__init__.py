"""The `achievements` command line: the embedded stack, the demo, the worker, people's steps."""
