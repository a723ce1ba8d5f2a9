"""Per-object probe settings from the ``fedns.io/probe`` annotation.

Forms: ``none``; ``tcp``; ``tcp:443``; ``http:/healthz``; ``https:/ready``;
``http://:8080/healthz`` (the host part stays empty: the probe always targets
the shard's load-balancer address). Without a port the object's port is used.
"""

from __future__ import annotations

import ipaddress
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


def _port(text: str, spec: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ProbeSpecError(spec=spec, problem=f"bad port {text!r}")
    return int(text)


def parse_probe(
    spec: str, *, target: str, default_port: int | None, host: str | None = None
) -> Probe | None:
    """The probe ``spec`` asks for against ``target`` (an LB IP or hostname).

    ``host`` is the HTTP Host header (an Ingress rule host), if any.
    Returns None for ``none``/``off``; raises ProbeSpecError when malformed.
    """
    text = spec.strip()
    lower = text.lower()
    if lower in ("none", "off", "false"):
        return None
    if lower == "tcp" or lower.startswith("tcp:"):
        port = _port(text[4:], spec) if lower.startswith("tcp:") else default_port
        if port is None:
            raise ProbeSpecError(spec=spec, problem="tcp probe needs a port (tcp:PORT)")
        return TcpProbe(host=target, port=port)
    scheme, sep, rest = text.partition(":")
    scheme = scheme.lower()
    if scheme not in ("http", "https"):
        raise ProbeSpecError(
            spec=spec, problem="expected none, tcp[:PORT] or http(s):[//:PORT]/PATH"
        )
    port = default_port
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
    if port is None:
        port = 443 if scheme == "https" else 80
    default = 443 if scheme == "https" else 80
    netloc = _host_for_url(target) if port == default else f"{_host_for_url(target)}:{port}"
    return HttpProbe(url=f"{scheme}://{netloc}{path}", host=host)
