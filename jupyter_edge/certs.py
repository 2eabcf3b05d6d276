"""A fleet's own certificate authority, and a certificate per identity.

``jupyter-edge certs create DIR`` writes ``DIR/ca/`` (the CA's certificate and
key: keep the key offline) and one folder per identity, each holding what
``--tls-dir`` reads: ``ca.pem`` (the CA's certificate), ``cert.pem`` and
``key.pem``. A certificate's common name is its identity: the scheduler's,
a site's name, or a person's (``ana``), which jobs record as their owner and
site policies name. Transport is Dask's own TLS (``distributed.Security``);
this module only makes the files, with the ``cryptography`` package.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from pathlib import Path

CA_DIR = "ca"
FILES = ("ca.pem", "cert.pem", "key.pem")


def _key():
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str):
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "jupyter-edge fleet"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _write_key(path: Path, key) -> None:
    from cryptography.hazmat.primitives import serialization

    data = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _write_cert(path: Path, cert) -> None:
    from cryptography.hazmat.primitives import serialization

    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def create_ca(folder: Path, days: int = 825):
    """A new CA in ``folder``: ``ca.pem`` and ``ca-key.pem``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    key = _key()
    now = datetime.datetime.now(datetime.timezone.utc)
    name = _name("jupyter-edge fleet CA")
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    _write_cert(folder / "ca.pem", cert)
    _write_key(folder / "ca-key.pem", key)
    return cert, key


def load_ca(folder: Path):
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    cert = x509.load_pem_x509_certificate((folder / "ca.pem").read_bytes())
    key = serialization.load_pem_private_key((folder / "ca-key.pem").read_bytes(), password=None)
    return cert, key


def issue(ca, folder: Path, common_name: str, hosts: list[str] = (), days: int = 825) -> Path:
    """A certificate for ``common_name`` signed by ``ca``, as a ``--tls-dir`` folder."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID

    ca_cert, ca_key = ca
    key = _key()
    now = datetime.datetime.now(datetime.timezone.utc)
    names = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        # Dask's peers are servers and clients at once: a site serves the scheduler, a client listens too.
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    folder.mkdir(parents=True, exist_ok=True)
    _write_cert(folder / "ca.pem", ca_cert)
    _write_cert(folder / "cert.pem", cert)
    _write_key(folder / "key.pem", key)
    return folder


def create(
    root: str | os.PathLike,
    sites: list[str] = (),
    clients: list[str] = (),
    hosts: list[str] = ("127.0.0.1", "localhost"),
    scheduler: str = "scheduler",
) -> dict[str, Path]:
    """A CA under ``root`` (reused if there) and a folder per identity:
    ``scheduler``, ``site-NAME`` for each site, ``client-NAME`` for each client."""
    root = Path(root)
    ca_dir = root / CA_DIR
    ca = load_ca(ca_dir) if (ca_dir / "ca-key.pem").exists() else create_ca(ca_dir)
    made = {"scheduler": issue(ca, root / "scheduler", scheduler, hosts)}
    for name in sites:
        made[f"site-{name}"] = issue(ca, root / f"site-{name}", name, hosts)
    for name in clients:
        made[f"client-{name}"] = issue(ca, root / f"client-{name}", name)
    return made


def common_name(cert_pem: bytes | str) -> str | None:
    """The common name in a PEM certificate (an identity)."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    data = cert_pem.encode() if isinstance(cert_pem, str) else cert_pem
    names = x509.load_pem_x509_certificate(data).subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else None
