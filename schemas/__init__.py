"""Pydantic models shared by workflows, activities, the gateway, the sandboxes and the CLI.

Every value that crosses a Temporal boundary is one of these models, so the single
pydantic data converter serialises Decimal money and timezone-aware times exactly.
"""
