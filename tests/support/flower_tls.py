"""Certificates and SuperNode keys for a lab in Flower's production configuration, made in a
test's tmp folder (nothing committed): a CA, the SuperLink's certificate for 127.0.0.1 and
localhost, and one ECDSA P-384 key per SuperNode (OpenSSH, as Flower reads them), with the
public halves the hub registers under ``public/``. Made with ``cryptography`` from Flower's
environment (the lab's own environment does not have it)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from datalab.flower_runtime import flower_bin

_MAKE = r"""
import datetime, ipaddress, sys
from pathlib import Path
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

out = Path(sys.argv[1])
(out / "public").mkdir(parents=True, exist_ok=True)
now = datetime.datetime.now(datetime.timezone.utc)
pem = serialization.Encoding.PEM


def name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def write_key(path, key):
    path.write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)


start, end = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=1)
ca_key = ec.generate_private_key(ec.SECP384R1())
ca = (x509.CertificateBuilder().subject_name(name("test CA")).issuer_name(name("test CA"))
      .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
      .not_valid_before(start).not_valid_after(end)
      .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
      .sign(ca_key, hashes.SHA384()))
(out / "ca.crt").write_bytes(ca.public_bytes(pem))
key = ec.generate_private_key(ec.SECP384R1())
san = x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                   x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
cert = (x509.CertificateBuilder().subject_name(name("127.0.0.1")).issuer_name(ca.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(end)
        .add_extension(san, critical=False).sign(ca_key, hashes.SHA384()))
(out / "superlink.crt").write_bytes(cert.public_bytes(pem))
write_key(out / "superlink.key", key)
for node in sys.argv[2:]:
    key = ec.generate_private_key(ec.SECP384R1())
    (out / f"{node}.key").write_bytes(key.private_bytes(
        pem, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()))
    (out / f"{node}.key").chmod(0o600)
    (out / f"{node}.pub").write_bytes(key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH))
"""


def make_flower_tls(folder: Path, registered: list[str], unregistered: list[str]) -> Path:
    """``folder`` with the CA, the SuperLink's certificate and key, and a key pair per node;
    only the ``registered`` nodes' public keys go to ``public/`` (what the hub registers)."""
    subprocess.run(
        [str(flower_bin() / "python"), "-c", _MAKE, str(folder), *registered, *unregistered],
        check=True,
        capture_output=True,
        timeout=120,
    )
    for node in registered:
        (folder / f"{node}.pub").rename(folder / "public" / f"{node}.pub")
    return folder
