"""Certificates for the TLS tests and benchmarks of the PanDA client: a CA, server certificates it
signs for 127.0.0.1, and client certificates in the shape of an X.509 proxy (certificate and key in one
PEM file). RSA or EC keys, made with the ``cryptography`` package (``hpcpilot[dev]``).
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

KINDS = ("rsa", "ec")


@dataclass(frozen=True)
class Issued:
    """A certificate and its key, as PEM files.

    Attributes
    ----------
    cert, key
        The certificate and the private key.
    """

    cert: Path
    key: Path

    def combined(self, path: Path) -> Path:
        """Certificate and key in one file, mode 0600 (an X.509 proxy's layout)."""
        path.write_bytes(self.cert.read_bytes() + self.key.read_bytes())
        path.chmod(0o600)
        return path


def available() -> bool:
    """Whether the ``cryptography`` package is installed."""
    try:
        import cryptography.x509  # noqa: F401
    except ImportError:
        return False
    return True


def _key(kind: str) -> Any:
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if kind == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    raise ValueError(f"unknown key kind {kind!r} (one of {KINDS})")


def _write(directory: Path, name: str, certificate: Any, key: Any) -> Issued:
    from cryptography.hazmat.primitives import serialization

    cert, key_file = directory / f"{name}.pem", directory / f"{name}.key"
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    key_file.chmod(0o600)
    return Issued(cert, key_file)


def make_ca(directory: Path, name: str = "ca", kind: str = "ec") -> Issued:
    """A self-signed CA certificate valid for two days."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    key = _key(kind)
    subject = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, f"hpcpilot test {name}")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .sign(key, hashes.SHA256())
    )
    return _write(directory, name, certificate, key)


def issue(ca: Issued, directory: Path, name: str, kind: str = "ec", *, client: bool = False) -> Issued:
    """A certificate signed by ``ca``: for the server 127.0.0.1, or (``client``) a client's."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization

    ca_cert = x509.load_pem_x509_certificate(ca.cert.read_bytes())
    ca_key: Any = serialization.load_pem_private_key(ca.key.read_bytes(), password=None)
    key = _key(kind)
    common_name = f"hpcpilot test {name}" if client else "127.0.0.1"
    now = datetime.datetime.now(datetime.UTC)
    usage = x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH if client else x509.oid.ExtendedKeyUsageOID.SERVER_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )
    if not client:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
    return _write(directory, name, builder.sign(ca_key, hashes.SHA256()), key)
