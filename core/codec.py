"""Payload encryption: AES-256-GCM with key ids, so keys can be rotated without downtime.

Every payload the SDK encodes (workflow and activity arguments and results, signals, updates,
queries, memo, user metadata, encoded failure attributes) leaves the process encrypted with the
current key; payloads are decrypted with whichever configured key they name. Search attributes
are never passed through a codec: the server has to index them.

Keys come from ACHIEVEMENTS_CODEC_KEYS = "id:base64key,id:base64key,..." (32-byte keys); the
first is the current one. Rotation: put the new key first and keep the old ones until no open
history (nor the retention period) holds payloads written with them.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

SETTING = "ACHIEVEMENTS_CODEC_KEYS"
ENCODING = b"binary/encrypted"
KEY_ID_METADATA = "encryption-key-id"
KEY_BYTES = 32
NONCE_BYTES = 12
KEY_ID_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class CodecConfigError(ValueError):
    """ACHIEVEMENTS_CODEC_KEYS is malformed. Messages never contain key material."""


class PayloadDecryptionError(ValueError):
    """An encrypted payload cannot be decrypted with the configured keys."""


def parse_codec_keys(raw: str) -> list[tuple[str, bytes]]:
    """Parse "id:base64key,..." into (id, key) pairs, the current key first.

    An empty or blank value means encryption is off (an empty list).
    """
    keys: list[tuple[str, bytes]] = []
    for position, entry in enumerate((e.strip() for e in raw.split(",")), start=1):
        if not entry:
            if raw.strip():
                raise CodecConfigError(f"{SETTING}: entry {position} is empty")
            continue
        key_id, sep, encoded = entry.partition(":")
        key_id = key_id.strip()
        if not sep:
            raise CodecConfigError(
                f"{SETTING}: entry {position} must be 'key-id:base64-key' (no ':' found)"
            )
        if not KEY_ID_PATTERN.match(key_id):
            raise CodecConfigError(
                f"{SETTING}: entry {position} has an invalid key id {key_id!r}; "
                "use 1-64 of A-Z a-z 0-9 . _ -"
            )
        try:
            key = base64.b64decode(encoded.strip(), validate=True)
        except binascii.Error:
            # Never echo the value: it is (part of) a secret.
            raise CodecConfigError(
                f"{SETTING}: the key of {key_id!r} is not valid base64"
            ) from None
        if len(key) != KEY_BYTES:
            raise CodecConfigError(
                f"{SETTING}: the key of {key_id!r} is {len(key)} bytes; AES-256 needs "
                f"{KEY_BYTES} (generate one with `openssl rand -base64 32`)"
            )
        if any(key_id == known for known, _ in keys):
            raise CodecConfigError(f"{SETTING}: key id {key_id!r} appears more than once")
        keys.append((key_id, key))
    return keys


class EncryptionCodec(PayloadCodec):
    """Encrypts with the first key; decrypts with any key it knows (rotation)."""

    def __init__(self, keys: Sequence[tuple[str, bytes]]) -> None:
        if not keys:
            raise CodecConfigError(f"{SETTING}: at least one key is needed to encrypt")
        self._current_id = keys[0][0]
        self._ciphers = {key_id: AESGCM(key) for key_id, key in keys}

    @property
    def current_key_id(self) -> str:
        return self._current_id

    @property
    def key_ids(self) -> list[str]:
        return list(self._ciphers)

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        cipher = self._ciphers[self._current_id]
        key_id = self._current_id.encode()
        encoded = []
        for payload in payloads:
            nonce = os.urandom(NONCE_BYTES)
            # The key id is authenticated data: relabelling a payload with another id fails.
            sealed = cipher.encrypt(nonce, payload.SerializeToString(), key_id)
            encoded.append(
                Payload(
                    metadata={"encoding": ENCODING, KEY_ID_METADATA: key_id},
                    data=nonce + sealed,
                )
            )
        return encoded

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self._decode_one(p) for p in payloads]

    def _decode_one(self, payload: Payload) -> Payload:
        # Histories written before encryption was switched on stay readable.
        if payload.metadata.get("encoding") != ENCODING:
            return payload
        key_id = payload.metadata.get(KEY_ID_METADATA, b"").decode(errors="replace")
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise PayloadDecryptionError(
                f"payload encrypted with unknown key id {key_id!r}; configured key ids: "
                f"{', '.join(self._ciphers)} ({SETTING})"
            )
        data = payload.data
        try:
            plain = cipher.decrypt(data[:NONCE_BYTES], data[NONCE_BYTES:], key_id.encode())
        except InvalidTag:
            raise PayloadDecryptionError(
                f"payload with key id {key_id!r} failed authentication: "
                "it was altered or encrypted with a different key under that id"
            ) from None
        return Payload.FromString(plain)
