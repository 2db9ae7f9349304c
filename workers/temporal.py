"""The one way to connect to Temporal: standard env config, one data converter everywhere."""

from __future__ import annotations

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter
from temporalio.envconfig import ClientConfig
from temporalio.service import RPCError, RPCStatusCode

from workflows import search_attributes

DATA_CONVERTER: DataConverter = pydantic_data_converter


async def connect(target_host: str | None = None, namespace: str | None = None) -> Client:
    """Connect from TEMPORAL_ADDRESS / TEMPORAL_NAMESPACE / TLS / API key / profile file.

    Explicit arguments override the environment (the embedded stack passes its own port).
    """
    config = ClientConfig.load_client_connect_config()
    if target_host is not None:
        config["target_host"] = target_host
    if namespace is not None:
        config["namespace"] = namespace
    config.setdefault("target_host", "localhost:7233")
    return await Client.connect(**config, data_converter=DATA_CONVERTER)


async def register_search_attributes(client: Client) -> None:
    """Register the lifecycle search attributes in the client's namespace (idempotent).

    The dev server takes them as start-up flags; this is for the time-skipping server and for
    self-hosted clusters (Temporal Cloud registers them through its own API or UI).
    """
    wanted = {
        key.name: IndexedValueType.ValueType(key.indexed_value_type)
        for key in search_attributes.ALL
    }
    try:
        existing = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=client.namespace)
        )
        missing = {k: v for k, v in wanted.items() if k not in existing.custom_attributes}
    except RPCError as err:
        # The time-skipping server can add search attributes but not list them.
        if err.status is not RPCStatusCode.UNIMPLEMENTED:
            raise
        missing = wanted
    if missing:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=client.namespace, search_attributes=missing)
        )
