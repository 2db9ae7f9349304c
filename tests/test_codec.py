"""Payload encryption: the AES-GCM codec, the one data converter, and the UI's codec server.

Unit tests on the codec itself, then a lifecycle on the real dev server through a gateway and
worker whose client encrypts: the history as the server stores it holds no confidential text,
the encrypting client reads everything, and the codec server decodes it over loopback HTTP
for the configured UI origin and token only.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg
import httpx
import pytest
import pytest_asyncio
from gateway_requests import disclosure_request
from google.protobuf import json_format
from google.protobuf.message import Message
from helpers.lifecycle import HISTORIES, finish, until
from pydantic import SecretStr
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.api.failure.v1 import Failure
from temporalio.client import Client, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from cli.stack import Ports, StackError
from cli.stack import Stack as DevStack
from core.codec import (
    ENCODING,
    KEY_ID_METADATA,
    SETTING,
    CodecConfigError,
    EncryptionCodec,
    PayloadDecryptionError,
    parse_codec_keys,
)
from core.http_server import bind_socket, make_server
from core.policy_book import PolicyBook
from core.settings import Settings
from core.temporal import data_converter
from gateway.app import create_gateway_app
from gateway.codec_server import allowed_origins
from gateway.serve import token_verifier
from schemas.lifecycle import Stage
from workers.worker import WORKFLOWS, build_worker
from workflows.ids import workflow_id
from workflows.lifecycle import AchievementLifecycle

if TYPE_CHECKING:
    from conftest import Stack

TITLE = "Cryogenic quantum sensor with photonic readout"
SUMMARY = "CONFIDENTIAL-7f3a: lattice-strain calibration method, not yet filed."
UI_ORIGIN = "http://localhost:18233"
TOKEN = "codec-test-token"

# Keys of the marker data the SDK core writes itself, in clear (no workflow data in them).
PATCH_MARKER = {"id", "deprecated"}
LOCAL_ACTIVITY_MARKER = {
    "seq",
    "attempt",
    "activity_id",
    "activity_type",
    "complete_time",
    "backoff",
    "original_schedule_time",
    "activation_index",
}


def new_key() -> bytes:
    return os.urandom(32)


def keys_setting(*pairs: tuple[str, bytes]) -> str:
    return ",".join(f"{kid}:{base64.b64encode(key).decode()}" for kid, key in pairs)


def plain(text: str) -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=json.dumps(text).encode())


# ---------------------------------------------------------------------------- the codec


async def test_round_trip_encrypts_with_the_current_key_and_restores_the_payload() -> None:
    codec = EncryptionCodec([("k1", new_key())])
    original = [plain(SUMMARY), plain("second")]

    encoded = await codec.encode(original)

    for payload in encoded:
        assert payload.metadata["encoding"] == ENCODING
        assert payload.metadata[KEY_ID_METADATA] == b"k1"
        assert b"CONFIDENTIAL" not in payload.SerializeToString()
    # A fresh nonce each time: equal plaintexts give different ciphertexts.
    assert (await codec.encode([original[0]]))[0].data != encoded[0].data
    assert await codec.decode(encoded) == original


async def test_rotation_decrypts_old_keys_and_encrypts_with_the_new_one() -> None:
    old, new = new_key(), new_key()
    before = EncryptionCodec([("2025-01", old)])
    written_before = await before.encode([plain(SUMMARY)])

    after = EncryptionCodec([("2026-01", new), ("2025-01", old)])
    written_after = await after.encode([plain(SUMMARY)])

    assert written_after[0].metadata[KEY_ID_METADATA] == b"2026-01"
    assert await after.decode(written_before + written_after) == [plain(SUMMARY)] * 2
    # Once the old key is dropped, what it wrote can no longer be read: say which key is missing.
    with pytest.raises(PayloadDecryptionError, match=r"unknown key id '2025-01'.*2026-01"):
        await EncryptionCodec([("2026-01", new)]).decode(written_before)


async def test_unknown_key_id_fails_with_a_clear_error() -> None:
    encoded = await EncryptionCodec([("lost", new_key())]).encode([plain(SUMMARY)])
    with pytest.raises(PayloadDecryptionError) as caught:
        await EncryptionCodec([("k1", new_key())]).decode(encoded)
    message = str(caught.value)
    assert "unknown key id 'lost'" in message
    assert "k1" in message and SETTING in message


async def test_altered_or_relabelled_payload_fails_authentication() -> None:
    k1, k2 = new_key(), new_key()
    codec = EncryptionCodec([("k1", k1), ("k2", k2)])
    [payload] = await codec.encode([plain(SUMMARY)])

    flipped = Payload()
    flipped.CopyFrom(payload)
    flipped.data = payload.data[:-1] + bytes([payload.data[-1] ^ 1])
    relabelled = Payload()
    relabelled.CopyFrom(payload)
    relabelled.metadata[KEY_ID_METADATA] = b"k2"

    for bad in (flipped, relabelled):
        with pytest.raises(PayloadDecryptionError, match="failed authentication"):
            await codec.decode([bad])


async def test_unencrypted_payloads_pass_through_decode() -> None:
    # Histories written before encryption was switched on must stay readable.
    codec = EncryptionCodec([("k1", new_key())])
    assert await codec.decode([plain("old")]) == [plain("old")]


SECRET_B64 = base64.b64encode(b"s" * 32).decode()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (f"k1{SECRET_B64}", "no ':' found"),
        (f"bad id:{SECRET_B64}", "invalid key id 'bad id'"),
        ("k1:not*base64!", "key of 'k1' is not valid base64"),
        (f"k1:{base64.b64encode(b'short').decode()}", "is 5 bytes; AES-256 needs 32"),
        (f"k1:{SECRET_B64},k1:{SECRET_B64}", "key id 'k1' appears more than once"),
        (f"k1:{SECRET_B64},", "entry 2 is empty"),
    ],
)
def test_invalid_key_setting_names_the_setting_and_hides_the_key(raw: str, expected: str) -> None:
    with pytest.raises(CodecConfigError) as caught:
        parse_codec_keys(raw)
    message = str(caught.value)
    assert message.startswith(f"{SETTING}: ")
    assert expected in message
    assert SECRET_B64 not in message and "not*base64" not in message


def test_one_function_decides_the_data_converter(monkeypatch: pytest.MonkeyPatch) -> None:
    assert data_converter(Settings(codec_keys=None)) is pydantic_data_converter
    assert data_converter(Settings(codec_keys=SecretStr(""))).payload_codec is None

    monkeypatch.setenv(
        "ACHIEVEMENTS_CODEC_KEYS", keys_setting(("new", new_key()), ("old", new_key()))
    )
    converter = data_converter(Settings())
    codec = converter.payload_codec
    assert isinstance(codec, EncryptionCodec)
    assert (codec.current_key_id, codec.key_ids) == ("new", ["new", "old"])
    # Still the pydantic converter underneath.
    assert converter.payload_converter_class is pydantic_data_converter.payload_converter_class

    monkeypatch.setenv("ACHIEVEMENTS_CODEC_KEYS", "k1:c2hvcnQ=")
    with pytest.raises(CodecConfigError, match=SETTING):
        data_converter(Settings())


def _history(path: Path) -> WorkflowHistory:
    record = json.loads(path.read_text(encoding="utf-8"))
    return WorkflowHistory.from_json(record["workflow_id"], record["history"])


def test_dev_stack_points_the_ui_at_the_codec_server_only_when_encrypting(tmp_path: Path) -> None:
    def flags(keys: str | None) -> list[str]:
        settings = Settings(codec_keys=SecretStr(keys) if keys is not None else None)
        return DevStack(
            settings=settings, ports=Ports(gateway=8400), data_dir=tmp_path
        ).codec_flags()

    assert flags(None) == []
    assert flags(keys_setting(("k1", new_key()))) == [
        "--ui-codec-endpoint",
        "http://127.0.0.1:8400/codec",
    ]
    with pytest.raises(StackError, match=SETTING):
        flags("k1:c2hvcnQ=")


async def test_failure_messages_are_encrypted_too() -> None:
    # An activity error can quote confidential input; with the codec on it is sealed as well.
    converter = data_converter(Settings(codec_keys=SecretStr(keys_setting(("k1", new_key())))))
    failure = Failure()
    await converter.encode_failure(ApplicationError(f"registry refused: {SUMMARY}"), failure)

    assert SUMMARY.encode() not in failure.SerializeToString()
    assert failure.encoded_attributes.metadata["encoding"] == ENCODING
    restored = await converter.decode_failure(failure)
    assert isinstance(restored, ApplicationError) and SUMMARY in restored.message


async def test_committed_histories_still_replay_once_encryption_is_on() -> None:
    # Turning encryption on must not break lifecycles that started before it.
    converter = data_converter(Settings(codec_keys=SecretStr(keys_setting(("k1", new_key())))))
    replayer = Replayer(workflows=list(WORKFLOWS), data_converter=converter)
    for path in sorted(HISTORIES.rglob("*.json"))[:4]:
        history = _history(path)
        result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
        assert result.replay_failure is None, f"{path.name}: {result.replay_failure}"


# ---------------------------------------------------------------------------- on the dev server


@dataclass
class Encrypted:
    client: Client  # with the codec
    plain: Client  # the same server, without it: what anyone with server access sees
    settings: Settings
    http: httpx.AsyncClient  # the encrypting gateway, over loopback HTTP


@pytest_asyncio.fixture(loop_scope="session")
async def encrypted(
    dev_env: WorkflowEnvironment, stack: Stack, db: asyncpg.Pool, task_queue: str
) -> AsyncIterator[Encrypted]:
    """A gateway and a worker whose client encrypts, on the session's dev server."""
    settings = stack.settings.model_copy(
        update={
            "task_queue": task_queue,
            "codec_keys": SecretStr(keys_setting(("current", new_key()), ("older", new_key()))),
            "codec_auth_token": SecretStr(TOKEN),
            "codec_ui_origin": UI_ORIGIN,
        }
    )
    config = dev_env.client.config()
    config["data_converter"] = data_converter(settings)
    client = Client(**config)
    verifier = token_verifier(settings)  # the session's real local issuer
    app = create_gateway_app(client, settings, PolicyBook.load(), verifier, pool=db)
    sock = bind_socket("127.0.0.1")
    port = sock.getsockname()[1]
    server = make_server(app, "127.0.0.1", port)
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    await server.wait_started(serving)
    try:
        async with (
            build_worker(client, stack.deps, task_queue, settings),
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30.0) as http,
        ):
            yield Encrypted(client=client, plain=dev_env.client, settings=settings, http=http)
    finally:
        server.should_exit = True
        await serving
        sock.close()
        await verifier.close()


def payloads_in(message: Message, path: str = "") -> Iterator[tuple[str, Payload]]:
    """Every Payload inside a protobuf message, with the field path that leads to it."""
    if isinstance(message, Payload):
        yield path, message
        return
    for field, value in message.ListFields():
        if field.message_type is None:
            continue
        children: list[Any]
        if isinstance(value, Message):
            children = [value]
        elif field.message_type.GetOptions().map_entry:
            children = list(value.values())
        else:
            children = list(value)
        for child in children:
            if isinstance(child, Message):
                yield from payloads_in(child, f"{path}.{field.name}")


def decode_body(payloads: list[Payload]) -> dict[str, Any]:
    return {"payloads": [json_format.MessageToDict(p) for p in payloads]}


@pytest.mark.integration
async def test_lifecycle_history_is_encrypted_and_the_codec_server_decodes_it(
    encrypted: Encrypted, stack: Stack
) -> None:
    aid = f"CX-{uuid.uuid4().hex[:10].upper()}"
    body = disclosure_request(aid, title=TITLE, summary=SUMMARY)
    officer = await stack.headers("officer.syn-uni")
    response = await encrypted.http.post("/achievements", json=body, headers=officer)
    assert response.status_code == 201, response.text

    handle = encrypted.client.get_workflow_handle_for(AchievementLifecycle.run, workflow_id(aid))
    # Activities ran (registry, exchange search, projections) with encrypted inputs and results.
    current = await until(handle, lambda s: s.stage is Stage.EVALUATION and s.search is not None)
    assert (current.disclosure.title, current.disclosure.summary) == (TITLE, SUMMARY)
    summary = await (await handle.describe()).static_summary()
    assert summary is not None and TITLE in summary

    # What the server stores, read without the codec.
    raw = await encrypted.plain.get_workflow_handle(workflow_id(aid)).fetch_history()
    found = [(path, p) for event in raw.events for path, p in payloads_in(event)]
    assert len(found) > 10
    for path, payload in found:
        assert TITLE.encode() not in payload.SerializeToString(), path
        assert b"CONFIDENTIAL-7f3a" not in payload.SerializeToString(), path
        if "search_attributes" in path:
            continue  # in clear by design: the server has to index them
        if "marker_recorded" in path and payload.metadata["encoding"] == b"json/plain":
            # The SDK core records workflow.patched ids and its local-activity bookkeeping
            # (attempt, times; the result itself is encrypted) in clear; nothing else may be.
            keys = set(json.loads(payload.data))
            assert keys == PATCH_MARKER or keys <= LOCAL_ACTIVITY_MARKER, payload
            continue
        assert payload.metadata["encoding"] == ENCODING, (path, payload)
        assert payload.metadata[KEY_ID_METADATA] == b"current", path
    # The static summary (title | institution | field) is user metadata: sealed as well.
    assert raw.events[0].user_metadata.summary.metadata["encoding"] == ENCODING
    whole = b"".join(event.SerializeToString() for event in raw.events)
    assert TITLE.encode() not in whole and b"CONFIDENTIAL-7f3a" not in whole

    # The codec server decodes the workflow input for the UI's origin, with the token.
    started = raw.events[0].workflow_execution_started_event_attributes
    sealed = list(started.input.payloads)
    ui = {"Origin": UI_ORIGIN, "Authorization": f"Bearer {TOKEN}"}
    response = await encrypted.http.post("/codec/decode", json=decode_body(sealed), headers=ui)
    assert response.status_code == 200, response.text
    assert response.headers["access-control-allow-origin"] == UI_ORIGIN
    decoded = json_format.ParseDict(response.json(), Payloads()).payloads
    assert decoded[0].metadata["encoding"] == b"json/plain"
    assert TITLE in json.loads(decoded[0].data)["disclosure"]["title"]

    # The workflow still ends cleanly: an update, its result and the completion, all encrypted.
    result = await finish(handle)
    assert result.final_stage is Stage.WITHDRAWN


@pytest.mark.integration
async def test_codec_server_refuses_wrong_token_origin_and_bad_bodies(
    encrypted: Encrypted, stack: Stack
) -> None:
    http = encrypted.http
    ui = {"Origin": UI_ORIGIN, "Authorization": f"Bearer {TOKEN}"}

    # Encode then decode over HTTP: the UI sends input this way.
    response = await http.post("/codec/encode", json=decode_body([plain(SUMMARY)]), headers=ui)
    assert response.status_code == 200, response.text
    sealed = json_format.ParseDict(response.json(), Payloads()).payloads
    assert sealed[0].metadata["encoding"] == ENCODING
    assert SUMMARY.encode() not in sealed[0].data
    response = await http.post("/codec/decode", json=decode_body(list(sealed)), headers=ui)
    assert json_format.ParseDict(response.json(), Payloads()).payloads[0] == plain(SUMMARY)
    # No payloads at all is still a well-formed answer.
    response = await http.post("/codec/decode", json={"payloads": []}, headers=ui)
    assert response.json() == {"payloads": []}

    body = decode_body(list(sealed))
    for headers in (
        {"Origin": UI_ORIGIN},
        {"Origin": UI_ORIGIN, "Authorization": "Bearer wrong-token"},
        {"Origin": UI_ORIGIN, "Authorization": TOKEN},  # not a bearer scheme
    ):
        response = await http.post("/codec/decode", json=body, headers=headers)
        assert response.status_code == 401, headers
        assert response.json()["field"] == "Authorization"
        assert SUMMARY not in response.text

    # The Web UI may forward the signed-in person's access token instead of the static one:
    # accepted for the people who read whole lifecycles, refused (403) for an expert.
    officer = {"Origin": UI_ORIGIN, **await stack.headers("officer.syn-uni")}
    response = await http.post("/codec/decode", json=body, headers=officer)
    assert response.status_code == 200, response.text
    assert json_format.ParseDict(response.json(), Payloads()).payloads[0] == plain(SUMMARY)
    expert = {"Origin": UI_ORIGIN, **await stack.headers("expert-a")}
    response = await http.post("/codec/decode", json=body, headers=expert)
    assert response.status_code == 403 and "regulator" in response.json()["detail"]
    assert SUMMARY not in response.text

    # In dev the UI answers at 127.0.0.1 as well as at localhost: the browser's origin then
    # differs, and the codec must answer it too (it used to refuse, and payloads went blank).
    twin = UI_ORIGIN.replace("localhost", "127.0.0.1")
    assert encrypted.settings.environment == "dev"
    response = await http.post(
        "/codec/decode", json=body, headers={"Origin": twin, "Authorization": f"Bearer {TOKEN}"}
    )
    assert response.status_code == 200, response.text
    assert response.headers["access-control-allow-origin"] == twin

    foreign = {"Origin": "http://evil.example", "Authorization": f"Bearer {TOKEN}"}
    response = await http.post("/codec/decode", json=body, headers=foreign)
    assert response.status_code == 403
    assert "access-control-allow-origin" not in response.headers
    assert SUMMARY not in response.text

    # Browser preflight: allowed for the UI origin only, and without the token.
    preflight = {"Origin": UI_ORIGIN, "Access-Control-Request-Method": "POST"}
    response = await http.options("/codec/decode", headers=preflight)
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == UI_ORIGIN
    assert "x-namespace" in response.headers["access-control-allow-headers"]
    response = await http.options("/codec/decode", headers={**preflight, **foreign})
    assert response.status_code == 403

    # Bad input names the field.
    response = await http.post("/codec/decode", content=b"not json", headers=ui)
    assert response.status_code == 422
    assert response.json()["detail"][0]["field"] == "body"
    response = await http.post("/codec/decode", json={"payloads": "x"}, headers=ui)
    assert response.json()["detail"][0]["field"] == "payloads"
    for bad in ({"payloads": [{"metadata": "x"}]}, {"payloads": [{"dta": "e30="}]}):
        response = await http.post("/codec/decode", json=bad, headers=ui)
        assert response.status_code == 422, bad
        assert response.json()["detail"][0]["field"] == "payloads"
    unknown = await EncryptionCodec([("gone", new_key())]).encode([plain(SUMMARY)])
    response = await http.post("/codec/decode", json=decode_body(unknown), headers=ui)
    assert response.status_code == 422
    assert response.json()["detail"][0]["field"] == "payloads[0]"
    assert "unknown key id 'gone'" in response.json()["detail"][0]["message"]

    # The session's gateway runs without encryption: no codec server there.
    async with httpx.AsyncClient(base_url=stack.gateway_url) as plain_gateway:
        response = await plain_gateway.post("/codec/decode", json=body, headers=ui)
    assert response.status_code == 404
    assert SETTING in response.json()["detail"]


def test_only_dev_accepts_the_loopback_twin_of_the_ui_origin() -> None:
    dev = Settings(environment="dev", codec_ui_origin="http://127.0.0.1:8233")
    assert allowed_origins(dev) == {"http://127.0.0.1:8233", "http://localhost:8233"}
    elsewhere = dev.model_copy(update={"environment": "production"})
    assert allowed_origins(elsewhere) == {"http://127.0.0.1:8233"}
    public = dev.model_copy(update={"codec_ui_origin": "https://temporal.example.edu"})
    assert allowed_origins(public) == {"https://temporal.example.edu"}
