"""The key file and encryption of secrets at rest."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from broker.security.crypto import DecryptionError, KeyFileError, KeyMissing, SecretBox, add_key


def test_key_file_is_created_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "secret.key"
    SecretBox.from_file(path, create=True)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_key_file_others_can_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "secret.key"
    SecretBox.from_file(path, create=True)
    path.chmod(0o644)
    with pytest.raises(KeyFileError, match="chmod 600"):
        SecretBox.from_file(path)


def test_ciphertext_is_bound_to_its_context(tmp_path: Path) -> None:
    box = SecretBox.from_file(tmp_path / "k", create=True)
    sealed = box.encrypt("JBSWY3DPEHPK3PXP", "totp:1")
    assert "JBSWY3DPEHPK3PXP" not in sealed
    assert box.decrypt(sealed, "totp:1") == "JBSWY3DPEHPK3PXP"
    with pytest.raises(DecryptionError):
        box.decrypt(sealed, "totp:2")
    assert box.encrypt("same", "c") != box.encrypt("same", "c")  # fresh nonce each time


def test_rotation_keeps_old_data_readable(tmp_path: Path) -> None:
    path = tmp_path / "k"
    old_box = SecretBox.from_file(path, create=True)
    sealed = old_box.encrypt("secret", "ctx")
    old_hash = old_box.keyed_hash("code")
    add_key(path)
    new_box = SecretBox.from_file(path)
    assert new_box.current_key_id != old_box.current_key_id
    assert new_box.decrypt(sealed, "ctx") == "secret"
    assert new_box.needs_reencrypt(sealed)
    assert old_hash in new_box.keyed_hashes("code")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_foreign_key_cannot_decrypt(tmp_path: Path) -> None:
    a = SecretBox.from_file(tmp_path / "a", create=True)
    b = SecretBox.from_file(tmp_path / "b", create=True)
    with pytest.raises(DecryptionError):
        b.decrypt(a.encrypt("x", "ctx"), "ctx")


def test_a_box_reads_its_file_again_for_a_key_it_does_not_know(tmp_path: Path) -> None:
    path = tmp_path / "k"
    running = SecretBox.from_file(path, create=True)  # the serving broker
    add_key(path)  # `vdi-broker keys rotate`, in another process
    rotated = SecretBox.from_file(path)
    sealed = rotated.encrypt("JBSWY3DPEHPK3PXP", "user:1")
    assert running.decrypt(sealed, "user:1") == "JBSWY3DPEHPK3PXP"
    assert running.current_key_id == rotated.current_key_id


def test_a_key_missing_from_the_file_is_a_503_and_the_old_keys_stay(tmp_path: Path) -> None:
    other = SecretBox.from_file(tmp_path / "other", create=True)
    path = tmp_path / "k"
    box = SecretBox.from_file(path, create=True)
    mine = box.encrypt("mine", "c")
    with pytest.raises(KeyMissing) as missing:
        box.decrypt(other.encrypt("theirs", "c"), "c")
    assert missing.value.status == 503 and missing.value.code == "key_unavailable"
    # A changed file that cannot be used (here: readable by others) is not taken,
    # and the keys read before stay in use.
    path.write_text("")
    path.chmod(0o644)
    with pytest.raises(KeyMissing):
        box.decrypt(other.encrypt("theirs", "c"), "c")
    assert box.decrypt(mine, "c") == "mine"
    # Once the file is right, and holds the key, it is read.
    path.write_text((tmp_path / "other").read_text())
    path.chmod(0o600)
    assert box.decrypt(other.encrypt("theirs", "c"), "c") == "theirs"
