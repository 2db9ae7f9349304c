"""The one way to connect to Temporal: standard env config, one data converter everywhere."""

from __future__ import annotations

import dataclasses

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter, DefaultFailureConverterWithEncodedAttributes
from temporalio.envconfig import ClientConfig
from temporalio.service import RPCError, RPCStatusCode

from core.codec import EncryptionCodec, parse_codec_keys
from core.settings import Settings
from workflows import search_attributes


def data_converter(settings: Settings) -> DataConverter:
    """THE data converter: pydantic, plus AES-GCM encryption when ACHIEVEMENTS_CODEC_KEYS is set.

    Clients, workers, the Replayer, the codec server and tests all get theirs here, so what one
    part writes every other part can read. Raises CodecConfigError on a malformed key list.
    """
    raw = settings.codec_keys.get_secret_value() if settings.codec_keys is not None else ""
    keys = parse_codec_keys(raw)
    if not keys:
        return pydantic_data_converter
    return dataclasses.replace(
        pydantic_data_converter,
        payload_codec=EncryptionCodec(keys),
        # Failure messages and stack traces can quote confidential input: encrypt them too.
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )


async def connect(
    target_host: str | None = None,
    namespace: str | None = None,
    *,
    settings: Settings | None = None,
) -> Client:
    """Connect from TEMPORAL_ADDRESS / TEMPORAL_NAMESPACE / TLS / API key / profile file.

    Explicit arguments override the environment (the embedded stack passes its own port).
    The data converter comes from `settings` (read from the environment when not given).
    """
    config = ClientConfig.load_client_connect_config()
    if target_host is not None:
        config["target_host"] = target_host
    if namespace is not None:
        config["namespace"] = namespace
    config.setdefault("target_host", "localhost:7233")
    converter = data_converter(settings if settings is not None else Settings())
    return await Client.connect(**config, data_converter=converter)


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
