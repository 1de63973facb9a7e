"""Ed25519 signatures (pycryptodome) over canonical JSON and over HTTP requests.

The hub signs every task it issues; each node signs its registration, its requests and its
partial results. Keys are stored as PEM files readable by their owner only.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from Crypto.PublicKey import ECC
from Crypto.Signature import eddsa

from datalab.canonical import canonical_bytes, sha256_hex

#: Header names of a signed node request.
NODE_HEADER = "X-Datalab-Node"
TIME_HEADER = "X-Datalab-Time"
SIGNATURE_HEADER = "X-Datalab-Signature"

#: How far a signed request's timestamp may be from the receiver's clock.
MAX_CLOCK_SKEW_S = 300.0


class BadSignature(Exception):
    """A signature did not verify; the message must be refused."""


class SigningKey:
    """An Ed25519 private key."""

    def __init__(self, key: ECC.EccKey) -> None:
        if key.curve != "Ed25519" or not key.has_private():
            raise ValueError("an Ed25519 private key is required")
        self._key = key
        self._signer = eddsa.new(key, "rfc8032")

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(ECC.generate(curve="Ed25519"))

    @classmethod
    def from_pem(cls, pem: str) -> SigningKey:
        return cls(ECC.import_key(pem))

    def to_pem(self) -> str:
        return self._key.export_key(format="PEM")

    @property
    def public_key(self) -> str:
        """The raw 32-byte public key, hex-encoded: the form that travels and gets pinned."""
        return self._key.public_key().export_key(format="raw").hex()

    def sign(self, data: bytes) -> str:
        return self._signer.sign(data).hex()

    def sign_value(self, value: Any) -> str:
        return self.sign(canonical_bytes(value))


def verify(public_key: str, data: bytes, signature: str) -> None:
    """Raise BadSignature unless ``signature`` is ``public_key``'s signature of ``data``."""
    try:
        key = eddsa.import_public_key(bytes.fromhex(public_key))
        eddsa.new(key, "rfc8032").verify(data, bytes.fromhex(signature))
    except (ValueError, TypeError) as exc:
        raise BadSignature("signature does not verify") from exc


def verify_value(public_key: str, value: Any, signature: str) -> None:
    verify(public_key, canonical_bytes(value), signature)


def load_or_create_key(path: Path) -> SigningKey:
    """Load the key at ``path``, creating it (mode 0600) on first use."""
    if path.exists():
        return SigningKey.from_pem(path.read_text(encoding="ascii"))
    key = SigningKey.generate()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(key.to_pem())
    os.replace(tmp, path)
    return key


def _request_message(method: str, path: str, timestamp: str, body: bytes) -> bytes:
    return f"{method.upper()}\n{path}\n{timestamp}\n{sha256_hex(body)}".encode()


def sign_request(
    key: SigningKey, agency: str, method: str, path: str, body: bytes
) -> dict[str, str]:
    """Headers that authenticate a node's HTTP request (method, path, time and body)."""
    timestamp = f"{time.time():.3f}"
    return {
        NODE_HEADER: agency,
        TIME_HEADER: timestamp,
        SIGNATURE_HEADER: key.sign(_request_message(method, path, timestamp, body)),
    }


def verify_request(
    public_key: str, method: str, path: str, timestamp: str, body: bytes, signature: str
) -> None:
    """Raise BadSignature if the request was not signed by ``public_key`` or is stale."""
    try:
        sent = float(timestamp)
    except ValueError as exc:
        raise BadSignature("bad timestamp") from exc
    if abs(time.time() - sent) > MAX_CLOCK_SKEW_S:
        raise BadSignature("request timestamp too far from the hub's clock")
    verify(public_key, _request_message(method, path, timestamp, body), signature)
