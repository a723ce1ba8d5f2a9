"""HTTP(S) and TCP probes against real loopback servers."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from config.model import HttpProbe, TcpProbe
from healthwatch.probes import Prober, ProbeResult
from tests.healthwatch.backends import Backend
from tests.ports import free_port


@pytest.fixture
async def prober() -> AsyncIterator[Prober]:
    p = Prober()
    await p.start()
    yield p
    await p.stop()


@pytest.fixture
async def backend() -> AsyncIterator[Backend]:
    b = Backend("127.0.0.1")
    await b.start()
    yield b
    await b.stop()


async def test_http_ok_and_status_range(prober: Prober, backend: Backend) -> None:
    res = await prober.check(HttpProbe(backend.url), 1.0)
    assert res.ok and res.detail == "ok" and res.kind == "ok" and res.latency >= 0
    backend.status = 503
    res = await prober.check(HttpProbe(backend.url), 1.0)
    assert (res.ok, res.detail, res.kind) == (False, "HTTP 503", "status")
    # 503 accepted when the configured range says so; 200 then refused
    assert (await prober.check(HttpProbe(backend.url, status_min=500, status_max=503), 1.0)).ok
    backend.status = 200
    assert not (await prober.check(HttpProbe(backend.url, status_min=500, status_max=503),
                                   1.0)).ok


async def test_http_redirect_is_not_followed(prober: Prober, backend: Backend) -> None:
    backend.status = 302
    assert (await prober.check(HttpProbe(backend.url, status_max=299), 1.0)).detail == (
        "HTTP 302")


async def test_http_host_header_override(prober: Prober) -> None:
    b = Backend("127.0.0.1", expect_host="shop.example.com")
    await b.start()
    try:
        assert (await prober.check(HttpProbe(b.url), 1.0)).detail == "HTTP 421"
        res = await prober.check(HttpProbe(b.url, host="shop.example.com"), 1.0)
        assert res.ok, res
        assert b.seen_hosts[-1] == "shop.example.com"
    finally:
        await b.stop()


async def test_http_refused_and_timeout(prober: Prober, backend: Backend) -> None:
    res = await prober.check(HttpProbe(f"http://127.0.0.1:{free_port()}/"), 1.0)
    assert (res.ok, res.detail, res.kind) == (False, "connection refused", "refused")
    backend.delay = 2.0
    res = await prober.check(HttpProbe(backend.url), 0.2)
    assert (res.ok, res.detail, res.kind) == (False, "timeout after 0.2s", "timeout")
    assert res.latency < 1.5  # bounded by the timeout, not the server's delay


async def test_tcp_probe(prober: Prober, backend: Backend) -> None:
    assert await prober.check(TcpProbe("127.0.0.1", backend.port), 1.0) == ProbeResult(
        True, "ok", pytest.approx(0.0, abs=1.0))  # type: ignore[arg-type]
    res = await prober.check(TcpProbe("127.0.0.1", free_port()), 1.0)
    assert (res.ok, res.detail) == (False, "connection refused")


def _self_signed(tmp: Path) -> ssl.SSLContext:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(key, hashes.SHA256()))
    (tmp / "c.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp / "k.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(tmp / "c.pem", tmp / "k.pem")
    return ctx


async def test_https_self_signed_needs_insecure(prober: Prober, tmp_path: Path) -> None:
    b = Backend("127.0.0.1", ssl_context=_self_signed(tmp_path))
    await b.start()
    try:
        res = await prober.check(HttpProbe(b.url), 2.0)
        assert not res.ok and res.detail.startswith("TLS error"), res
        res = await prober.check(HttpProbe(b.url, insecure=True), 2.0)
        assert res.ok, res
    finally:
        await b.stop()


async def test_bad_url_is_a_failed_result_not_an_exception(prober: Prober) -> None:
    res = await prober.check(HttpProbe("http://[not-an-ip/"), 0.5)
    assert not res.ok and res.kind == "error" and res.detail.startswith("error:")


async def test_prober_without_start_opens_its_session() -> None:
    p = Prober()
    try:
        res = await p.check(HttpProbe(f"http://127.0.0.1:{free_port()}/"), 0.5)
        assert res.detail == "connection refused"
    finally:
        await p.stop()
