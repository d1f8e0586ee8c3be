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
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from broker.errors import Unavailable
from broker.security.files import KeyFileError as KeyFileError  # re-exported
from broker.security.files import create_private, ensure_private

log = logging.getLogger(__name__)

FORMAT = "v1"
NONCE_BYTES = 12


class DecryptionError(Exception):
    """A ciphertext could not be decrypted with any known key."""


class KeyMissing(DecryptionError, Unavailable):
    """A ciphertext under a key this broker's key file does not hold: the file
    was not copied here after `vdi-broker keys rotate` on another replica. Not
    the user's fault, and over once the file is in place: a 503."""

    code = "key_unavailable"


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
    """Encrypts small secrets (TOTP seeds) with AES-256-GCM bound to a context.

    Built from a key file, it reads the file again when it meets a ciphertext
    under a key it does not know and the file has changed since: after
    `vdi-broker keys rotate` (which re-encrypts every secret under a new key) a
    running broker goes on without a restart."""

    def __init__(self, keys: list[tuple[str, bytes]], path: Path | None = None) -> None:
        self._use(keys)
        self._path = path
        self._stamp = _stamp(path) if path is not None else None
        self._missing_said: set[str] = set()  # key ids logged as missing

    def _use(self, keys: list[tuple[str, bytes]]) -> None:
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
        return cls(_read_keys(path), path)

    def _key(self, key_id: str) -> _Key:
        """The key named `key_id`, after reading the key file again if it is
        unknown and the file changed."""
        key = self._by_id.get(key_id)
        problem = ""
        path = self._path
        stamp = _stamp(path) if key is None and path is not None else None
        if path is not None and stamp is not None and stamp != self._stamp:
            try:
                keys = _read_keys(path)
            except KeyFileError as exc:  # half copied, or readable by others: keep ours
                problem = f" ({exc})"
            else:
                # The stamp from before the read: a change during it is read next time.
                self._stamp = stamp
                self._use(keys)
                key = self._by_id.get(key_id)
        if key is None:
            if key_id not in self._missing_said:
                self._missing_said.add(key_id)
                log.error(
                    "a stored secret is encrypted under key %s, which the key file %s does "
                    "not hold%s; copy the key file from the broker where `vdi-broker keys "
                    "rotate` ran (logins of users enrolled under it fail until then)",
                    key_id,
                    self._path,
                    problem,
                )
            raise KeyMissing("The broker cannot check codes right now; try again later.")
        return key

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
            raw = base64.urlsafe_b64decode(blob)
        except ValueError as exc:
            raise DecryptionError("unknown ciphertext format") from exc
        if fmt != FORMAT:
            raise DecryptionError(f"unknown ciphertext format {fmt}")
        key = self._key(key_id)
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


def _stamp(path: Path) -> tuple[int, int, int, int] | None:
    """What tells a changed key file: inode, size, and the times of its last
    write and of its last change (a chmod or chown to fix access counts too)."""
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _read_keys(path: Path) -> list[tuple[str, bytes]]:
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
    return keys
