"""A simulated API server on HTTPS that authenticates clients by certificate,
plus a throwaway PKI to go with it.

    pki = Pki.create()                     # CA, server cert for 127.0.0.1
    api = CertAuthAPI(pki, name="a", accepted={"fedns-1"})
    api.accept("fedns-2")                  # the cert with CN fedns-1 now gets 401
    await api.rotate(clients=Pki.create()) # restarted: old client certs fail the handshake

The TLS handshake asks for a client certificate signed by the client CA (the
PKI's own unless ``rotate`` named another); a request whose certificate's
common name is not accepted gets ``401 Unauthorized`` with a Kubernetes
``Status`` body, as a real API server answers a revoked or unknown client
certificate. A certificate the client CA did not sign, or a server
certificate the client does not trust, fails the handshake itself, as an
expired client certificate or a rotated CA does on a real API server. The
server speaks TLS 1.2 at most: under TLS 1.3 the client learns of a refused
certificate only from an alert after the handshake, which asyncio's server
drops, so the client would see a plain disconnect instead of the TLS error
that a real API server's alert gives it. Needs ``cryptography``.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import os
import ssl
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from healthwatch.kube.sim import FakeKubeAPI
from healthwatch.kube.sim.faults import status_body
from tests.fakekube.auth import kubeconfig_text, replace_file


@dataclass(frozen=True, slots=True)
class KeyPair:
    cert_pem: bytes
    key_pem: bytes


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _cert(subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Name | None,
          signer: ec.EllipticCurvePrivateKey, *, ca: bool = False,
          ip: str | None = None) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer or name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(hours=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ip is not None:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]),
            critical=False)
    return builder.sign(signer, hashes.SHA256())


@dataclass(frozen=True, slots=True)
class Pki:
    ca_pem: bytes
    server: KeyPair
    _ca_key_pem: bytes

    @classmethod
    def create(cls, host: str = "127.0.0.1") -> Pki:
        ca_key, server_key = _key(), _key()
        ca = _cert("fake-kube-ca", ca_key, None, ca_key, ca=True)
        server = _cert(host, server_key, ca.subject, ca_key, ip=host)
        return cls(ca.public_bytes(serialization.Encoding.PEM),
                   KeyPair(server.public_bytes(serialization.Encoding.PEM), _pem(server_key)),
                   _pem(ca_key))

    def client(self, common_name: str) -> KeyPair:
        """A client certificate for ``common_name``, signed by the CA."""
        ca_key = serialization.load_pem_private_key(self._ca_key_pem, None)
        assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
        ca = x509.load_pem_x509_certificate(self.ca_pem)
        key = _key()
        cert = _cert(common_name, key, ca.subject, ca_key)
        return KeyPair(cert.public_bytes(serialization.Encoding.PEM), _pem(key))


class CertAuthAPI(FakeKubeAPI):
    """``FakeKubeAPI`` on HTTPS, authenticating clients by certificate common name."""

    def __init__(self, pki: Pki, name: str = "sim", accepted: Iterable[str] = ()) -> None:
        super().__init__(name=name)
        self.pki = pki  # the server's certificate and the CA that clients must trust
        self.client_pki = pki  # the CA that must have signed a client's certificate
        self.accepted = frozenset(accepted)
        self.seen: list[tuple[float, str, str | None, bool]] = []  # (time, path, CN, accepted)
        self._tls = _server_context(pki, pki)

    def accept(self, *common_names: str) -> None:
        self.accepted = frozenset(common_names)

    async def rotate(self, *, pki: Pki | None = None, clients: Pki | None = None) -> None:
        """Restart (every connection dropped) serving the certificate of
        ``pki`` and requiring client certificates signed by ``clients``' CA;
        the one not given stays."""
        self.pki = pki or self.pki
        self.client_pki = clients or self.client_pki
        self._tls = _server_context(self.pki, self.client_pki)
        await self.restart()

    def presented(self, common_name: str, since: float = 0.0) -> set[str]:
        """The paths requested with ``common_name``'s certificate since ``since``."""
        return {path for at, path, cn, _ok in self.seen if cn == common_name and at >= since}

    @property
    def tls(self) -> ssl.SSLContext:
        return self._tls

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        peer = request.transport.get_extra_info("peercert") if request.transport else None
        cn = _common_name(peer)
        ok = cn is not None and cn in self.accepted
        self.seen.append((time.time(), request.path, cn, ok))
        if not ok:
            return web.json_response(status_body(401, "Unauthorized", "Unauthorized"), status=401)
        return await super()._handle(request)


def _server_context(server: Pki, clients: Pki) -> ssl.SSLContext:
    """TLS for the server (1.2 at most, see the module): ``server``'s
    certificate, and client certificates required, signed by ``clients``' CA."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cadata=clients.ca_pem.decode())
    with tempfile.TemporaryDirectory() as tmp:  # load_cert_chain reads files only
        cert, key = Path(tmp, "server.crt"), Path(tmp, "server.key")
        cert.write_bytes(server.server.cert_pem)
        key.write_bytes(server.server.key_pem)
        ctx.load_cert_chain(cert, key)
    return ctx


def _common_name(peer: object) -> str | None:
    if not isinstance(peer, dict):
        return None
    for rdn in peer.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None


def _b64(data: bytes) -> str:
    return base64.standard_b64encode(data).decode()


def cert_kubeconfig_text(*, context: str, api: CertAuthAPI, client: KeyPair,
                         room: int = 0) -> str:
    """A kubeconfig with the server's CA and ``client``'s certificate and key
    embedded (``*-data``, as in a Secret), followed by ``room`` blank lines
    (space that ``rewrite_unnoticed`` may take back)."""
    cluster: dict[str, object] = {"server": api.url,
                                  "certificate-authority-data": _b64(api.pki.ca_pem)}
    user: dict[str, object] = {"client-certificate-data": _b64(client.cert_pem),
                               "client-key-data": _b64(client.key_pem)}
    return kubeconfig_text(context, cluster, user) + "\n" * room


def write_cert_kubeconfig(path: str, *, context: str, api: CertAuthAPI, client: KeyPair,
                          room: int = 0) -> str:
    """``cert_kubeconfig_text``, swapped in atomically."""
    return replace_file(path, cert_kubeconfig_text(context=context, api=api, client=client,
                                                   room=room))


def rewrite_unnoticed(path: str, text: str) -> None:
    """Overwrite ``path`` with ``text`` in place, padded with blank lines to the
    old size, and put the old modification time back: the same inode, size and
    mtime, as a tool that preserves times may leave a file whose content it
    changed. Needs ``text`` no longer than the file."""
    before = os.stat(path)
    data = text.encode()
    if len(data) > before.st_size:
        raise ValueError(f"no room: {len(data)} bytes for a file of {before.st_size}")
    with open(path, "r+b") as f:
        f.write(data + b"\n" * (before.st_size - len(data)))
        f.truncate()
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


def exec_status(client: KeyPair) -> dict[str, str]:
    """The ExecCredential status with which an exec plugin hands out ``client``."""
    return {"clientCertificateData": client.cert_pem.decode(),
            "clientKeyData": client.key_pem.decode()}


__all__ = [
    "CertAuthAPI",
    "KeyPair",
    "Pki",
    "cert_kubeconfig_text",
    "exec_status",
    "rewrite_unnoticed",
    "write_cert_kubeconfig",
]
