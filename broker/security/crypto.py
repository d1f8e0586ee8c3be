"""The broker key file: encryption of secrets at rest and keyed hashes.

The key file holds one key per line, `KEY_ID BASE64_KEY`; the first line is the
current key, the others are kept so data written under them stays readable
after a rotation (docs/operations.md). It is created on first start with mode
0600 and the broker refuses to use one that others can read.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from broker.security.files import KeyFileError as KeyFileError  # re-exported
from broker.security.files import create_private, ensure_private

FORMAT = "v1"
NONCE_BYTES = 12


class DecryptionError(Exception):
    """A ciphertext could not be decrypted with any known key."""


@dataclass(frozen=True)
class _Key:
    key_id: str
    aead: AESGCM
    mac_key: bytes


def _derive(master: bytes, purpose: bytes) -> bytes:
    return HKDF(algorithm=SHA256(), length=32, salt=None, info=purpose).derive(master)


def _make_key(key_id: str, master: bytes) -> _Key:
    return _Key(
        key_id=key_id,
        aead=AESGCM(_derive(master, b"vdi-broker secrets at rest")),
        mac_key=_derive(master, b"vdi-broker keyed hash"),
    )


def create_key_file(path: Path) -> None:
    """Write a fresh key file with mode 0600; never overwrites an existing one."""
    line = f"k{secrets.token_hex(4)} {base64.b64encode(secrets.token_bytes(32)).decode()}\n"
    create_private(path, line.encode())


def add_key(path: Path) -> str:
    """Put a new current key in front of the existing ones (key rotation)."""
    old = path.read_text()
    key_id = f"k{secrets.token_hex(4)}"
    new = f"{key_id} {base64.b64encode(secrets.token_bytes(32)).decode()}\n" + old
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(new)
    tmp.replace(path)
    return key_id


class SecretBox:
    """Encrypts small secrets (TOTP seeds) with AES-256-GCM bound to a context."""

    def __init__(self, keys: list[tuple[str, bytes]]) -> None:
        if not keys:
            raise KeyFileError("no keys")
        self._keys = [_make_key(key_id, master) for key_id, master in keys]
        self._by_id = {k.key_id: k for k in self._keys}

    @classmethod
    def from_file(cls, path: Path, *, create: bool = False) -> SecretBox:
        if not path.exists():
            if not create:
                raise KeyFileError(f"key file {path} does not exist")
            create_key_file(path)
        ensure_private(path, "key file")
        keys: list[tuple[str, bytes]] = []
        for number, raw in enumerate(path.read_text().splitlines(), start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            try:
                key_id, encoded = line.split()
                master = base64.b64decode(encoded, validate=True)
            except ValueError as exc:
                raise KeyFileError(f"{path}:{number}: expected 'KEY_ID BASE64_KEY'") from exc
            if len(master) < 32:
                raise KeyFileError(f"{path}:{number}: key shorter than 256 bits")
            keys.append((key_id, master))
        return cls(keys)

    @property
    def current_key_id(self) -> str:
        return self._keys[0].key_id

    def encrypt(self, plaintext: str, context: str) -> str:
        key = self._keys[0]
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = key.aead.encrypt(nonce, plaintext.encode(), context.encode())
        blob = base64.urlsafe_b64encode(nonce + sealed).decode()
        return f"{FORMAT}.{key.key_id}.{blob}"

    def decrypt(self, ciphertext: str, context: str) -> str:
        try:
            fmt, key_id, blob = ciphertext.split(".", 2)
            key = self._by_id[key_id]
            raw = base64.urlsafe_b64decode(blob)
        except (ValueError, KeyError) as exc:
            raise DecryptionError("unknown ciphertext format or key") from exc
        if fmt != FORMAT:
            raise DecryptionError(f"unknown ciphertext format {fmt}")
        try:
            plain = key.aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], context.encode())
        except InvalidTag as exc:
            raise DecryptionError("ciphertext does not match its context or key") from exc
        return plain.decode()

    def needs_reencrypt(self, ciphertext: str) -> bool:
        return not ciphertext.startswith(f"{FORMAT}.{self.current_key_id}.")

    def keyed_hash(self, value: str) -> str:
        """HMAC-SHA256 under the current key: the stored form of low-entropy codes."""
        return hmac.new(self._keys[0].mac_key, value.encode(), hashlib.sha256).hexdigest()

    def keyed_hashes(self, value: str) -> list[str]:
        """The hash under every known key, for look-ups that survive a key rotation."""
        return [hmac.new(k.mac_key, value.encode(), hashlib.sha256).hexdigest() for k in self._keys]
