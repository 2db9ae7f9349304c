"""Links into the Temporal Web UI, so people go from a row to its workflow in one click."""

from __future__ import annotations

from urllib.parse import quote


def workflow_url(ui_base: str, namespace: str, workflow_id: str) -> str:
    """The UI page of a workflow's latest run: {ui}/namespaces/{namespace}/workflows/{id}."""
    return (
        f"{ui_base.rstrip('/')}/namespaces/{quote(namespace, safe='')}"
        f"/workflows/{quote(workflow_id, safe='')}"
    )
