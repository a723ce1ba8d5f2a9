"""A simulated API server on HTTPS that authenticates clients by certificate,
plus a throwaway PKI to go with it.

    pki = Pki.create()                     # CA, server cert for 127.0.0.1
    api = CertAuthAPI(pki, name="a", accepted={"fedns-1"})
    api.accept("fedns-2")                  # the cert with CN fedns-1 now gets 401

The TLS handshake asks for a client certificate signed by the CA; a request
whose certificate's common name is not accepted gets ``401 Unauthorized``
with a Kubernetes ``Status`` body, as a real API server answers a revoked
or unknown client certificate. Needs ``cryptography``.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import ssl
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import yaml
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from healthwatch.kube.sim import FakeKubeAPI
from healthwatch.kube.sim.faults import status_body
from tests.fakekube.auth import replace_file


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
        self.pki = pki
        self.accepted = frozenset(accepted)
        self.seen: list[tuple[float, str, str | None, bool]] = []  # (time, path, CN, accepted)
        self._tls = _server_context(pki)

    def accept(self, *common_names: str) -> None:
        self.accepted = frozenset(common_names)

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


def _server_context(pki: Pki) -> ssl.SSLContext:
    """TLS for the server: its certificate, and client certificates required,
    signed by the PKI's CA."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cadata=pki.ca_pem.decode())
    with tempfile.TemporaryDirectory() as tmp:  # load_cert_chain reads files only
        cert, key = Path(tmp, "server.crt"), Path(tmp, "server.key")
        cert.write_bytes(pki.server.cert_pem)
        key.write_bytes(pki.server.key_pem)
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


def write_cert_kubeconfig(path: str, *, context: str, api: CertAuthAPI, client: KeyPair) -> str:
    """A kubeconfig with the CA and ``client``'s certificate and key embedded
    (``*-data``, as in a Secret), swapped in atomically."""
    def b64(data: bytes) -> str:
        return base64.standard_b64encode(data).decode()

    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": context, "cluster": {
            "server": api.url, "certificate-authority-data": b64(api.pki.ca_pem)}}],
        "users": [{"name": context, "user": {
            "client-certificate-data": b64(client.cert_pem),
            "client-key-data": b64(client.key_pem)}}],
        "contexts": [{"name": context, "context": {"cluster": context, "user": context}}],
        "current-context": context,
    }
    return replace_file(path, yaml.safe_dump(doc, sort_keys=False))


__all__ = ["CertAuthAPI", "KeyPair", "Pki", "write_cert_kubeconfig"]
