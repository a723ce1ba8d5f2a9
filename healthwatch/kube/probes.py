"""Per-object probe settings from the ``fedns.io/probe`` annotation.

Forms: ``none``; ``tcp``; ``tcp:443``; ``http:/healthz``; ``https:/ready``;
``http://:8080/healthz`` (the host part stays empty: the probe always targets
the shard's load-balancer address). Without a port the object's port is used;
the caller may give one per scheme (``SchemePorts``), since where an object
serves HTTP and HTTPS can differ (an HTTPRoute's Gateway listeners).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

from config.model import HttpProbe, Probe, TcpProbe
from healthwatch.kube.errors import ProbeSpecError


def _host_for_url(target: str) -> str:
    try:
        if ipaddress.ip_address(target).version == 6:
            return f"[{target}]"
    except ValueError:
        pass
    return target


HTTP_PORT = 80
HTTPS_PORT = 443


@dataclass(frozen=True, slots=True)
class SchemePorts:
    """Where a probe that names no port goes, per scheme. None: the scheme's
    own port (80, 443); a TCP probe then has none and needs ``tcp:PORT``."""

    tcp: int | None = None
    http: int | None = None
    https: int | None = None

    @classmethod
    def every(cls, port: int | None) -> SchemePorts:
        """One port for every scheme (a Service's first port)."""
        return cls(port, port, port)

    def http_port(self, scheme: str) -> int:
        """The port of an HTTP probe of ``scheme`` ("http" or "https")."""
        given = self.https if scheme == "https" else self.http
        return given if given is not None else _scheme_port(scheme)


def _scheme_port(scheme: str) -> int:
    return HTTPS_PORT if scheme == "https" else HTTP_PORT


def _port(text: str, spec: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ProbeSpecError(spec=spec, problem=f"bad port {text!r}")
    return int(text)


def parse_probe(
    spec: str,
    *,
    target: str,
    default_port: int | SchemePorts | None,
    host: str | None = None,
) -> Probe | None:
    """The probe ``spec`` asks for against ``target`` (an LB IP or hostname).

    ``default_port`` is where a probe without a port goes: one port for every
    scheme (a Service's first port), or per scheme. ``host`` is the HTTP Host
    header (an Ingress rule host), if any.
    Returns None for ``none``/``off``; raises ProbeSpecError when malformed.
    """
    ports = (default_port if isinstance(default_port, SchemePorts)
             else SchemePorts.every(default_port))
    text = spec.strip()
    lower = text.lower()
    if lower in ("none", "off", "false"):
        return None
    if lower == "tcp" or lower.startswith("tcp:"):
        port = _port(text[4:], spec) if lower.startswith("tcp:") else ports.tcp
        if port is None:
            raise ProbeSpecError(spec=spec, problem="tcp probe needs a port (tcp:PORT)")
        return TcpProbe(host=target, port=port)
    scheme, sep, rest = text.partition(":")
    scheme = scheme.lower()
    if scheme not in ("http", "https"):
        raise ProbeSpecError(
            spec=spec, problem="expected none, tcp[:PORT] or http(s):[//:PORT]/PATH"
        )
    port = ports.http_port(scheme)
    path = rest or "/"
    if rest.startswith("//"):
        parts = urlsplit(f"{scheme}:{rest}")
        if parts.hostname:
            raise ProbeSpecError(
                spec=spec, problem="leave the host empty; the probe targets the LB address"
            )
        if parts.netloc not in ("", ":"):
            port = _port(parts.netloc.lstrip(":"), spec)
        path = parts.path or "/"
        if parts.query:
            path = f"{path}?{parts.query}"
    elif not sep:
        path = "/"
    if not path.startswith("/"):
        raise ProbeSpecError(spec=spec, problem="path must start with '/'")
    address = _host_for_url(target)
    netloc = address if port == _scheme_port(scheme) else f"{address}:{port}"
    return HttpProbe(url=f"{scheme}://{netloc}{path}", host=host)
