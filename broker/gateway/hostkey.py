"""The gateway's SSH host key: made on first start, kept, shown as a fingerprint.

Users check the fingerprint (portal, `POST /sessions`, `vdi-connect` checks it
itself) against what their SSH client sees, so the key must stay the same across
restarts, and every replica behind one load balancer needs a copy of the same
file. The file is an OpenSSH private key with mode 0600; one that others can read
is refused, as sshd does.
"""

from __future__ import annotations

from pathlib import Path

import asyncssh

from broker.security.files import KeyFileError, create_private, ensure_private

ALGORITHM = "ssh-ed25519"


def load_or_create(path: Path) -> asyncssh.SSHKey:
    """The host key at `path`, generated there first if there is none."""
    if not path.exists():
        key = asyncssh.generate_private_key(ALGORITHM, comment="vdi-broker gateway")
        try:
            create_private(path, key.export_private_key())
        except FileExistsError:
            pass  # another process made it first: use theirs
        else:
            return key
    return load(path)


def load(path: Path) -> asyncssh.SSHKey:
    if not path.exists():
        raise KeyFileError(f"gateway host key {path} does not exist (the gateway makes it)")
    ensure_private(path, "gateway host key")
    try:
        return asyncssh.read_private_key(path)
    except (asyncssh.KeyImportError, ValueError) as exc:
        raise KeyFileError(f"gateway host key {path} is not a usable private key: {exc}") from exc


def fingerprint(key: asyncssh.SSHKey) -> str:
    """SHA256 fingerprint as OpenSSH prints it: `SHA256:` and unpadded base64."""
    value: str = key.get_fingerprint("sha256")
    return value


def fingerprint_of_file(path: Path) -> str | None:
    """The fingerprint of the key file, or None while there is none yet."""
    if not path.exists():
        return None
    return fingerprint(load(path))
