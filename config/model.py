"""The validated configuration: frozen values handed to every other package.

Only ``config.loader`` builds these; everything else reads them. Names are
absolute, lower-case and end with a dot; durations are seconds (float).

It also holds the syntax of a drain's target and reason (``split_service``,
``check_drain_reason``): the config's ``drains`` and healthwatch's drain API
read them alike, and config comes first (healthwatch imports config, never
the other way round).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Literal

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
WhenAllUnhealthy = Literal["serve_all", "nxdomain"]
FederateMode = Literal["annotation", "label", "serviceexport"]

ShardKind = Literal["service", "ingress", "httproute"]
SHARD_KINDS: tuple[ShardKind, ...] = ("service", "ingress", "httproute")
# The kinds whose names are their hosts (SPEC §2, "Ingress hosts"): L7 entry
# points (an Ingress, a Gateway API HTTPRoute). A Service's names come from its
# namespace and name instead. The kind keeps an HTTPRoute and an Ingress of the
# same namespace/name two shards, and is the prefix of their ``service`` text.
HOST_KINDS: frozenset[ShardKind] = frozenset({"ingress", "httproute"})
_BY_PREFIX: dict[str, ShardKind] = {k: k for k in HOST_KINDS}
MAX_REASON = 200  # characters of a drain's reason


def kind_of(service: str) -> ShardKind:
    """The kind a shard's ``service`` text names; text without a known kind
    prefix is a Service's (lenient: for persisted or foreign text)."""
    prefix, sep, _ = service.partition(":")
    return _BY_PREFIX.get(prefix, "service") if sep else "service"


def split_service(service: str) -> tuple[ShardKind, str, str]:
    """(kind, namespace, name) of ``NAMESPACE/NAME`` or ``KIND:NAMESPACE/NAME``
    (KIND one of ``HOST_KINDS``), the inverse of ``ShardSpec.service``; raises
    ValueError for anything else, so that a drain of a mistyped target is an
    error rather than a drain of nothing."""
    kind = kind_of(service)
    base = service if kind == "service" else service.split(":", 1)[1]
    ns, sep, name = base.partition("/")
    if not sep or not ns or not name or "/" in name or ":" in ns:
        kinds = ", ".join(sorted(HOST_KINDS))
        raise ValueError(f"expected NAMESPACE/NAME or KIND:NAMESPACE/NAME (KIND: {kinds}), "
                         f"got {service!r}")
    return kind, ns, name


def check_drain_reason(reason: object) -> str:
    """A drain's ``reason`` without surrounding blanks; ValueError if it is not
    a string, too long, or not printable on one line (it ends up in logs and
    in ``fedns status``)."""
    if not isinstance(reason, str):
        raise ValueError(f"reason must be a string, got {type(reason).__name__}")
    text = reason.strip()
    if len(text) > MAX_REASON:
        raise ValueError(f"reason is {len(text)} characters long; at most {MAX_REASON}")
    if not text.isprintable():
        raise ValueError("reason must be printable text (no control characters, "
                         "no line breaks)")
    return text


@dataclass(frozen=True, slots=True)
class HttpProbe:
    """An HTTP(S) GET whose status must fall in ``[status_min, status_max]``."""

    url: str
    host: str | None = None
    status_min: int = 200
    status_max: int = 399
    insecure: bool = False  # skip TLS verification (self-signed backends)


@dataclass(frozen=True, slots=True)
class TcpProbe:
    """A TCP connect to ``host:port``."""

    host: str
    port: int


Probe = HttpProbe | TcpProbe


@dataclass(frozen=True, slots=True)
class Health:
    interval: float = 1.0
    timeout: float = 0.5
    rise: int = 2
    fall: int = 2
    min_ready: int = 1
    cluster_grace: float = 3.0
    when_all_unhealthy: WhenAllUnhealthy = "serve_all"


@dataclass(frozen=True, slots=True)
class Region:
    name: str
    location: tuple[float, float]  # (latitude, longitude) in degrees
    zones: tuple[str, ...] = ()
    fallback: tuple[str, ...] = ()  # explicit fallback order; else by distance
    countries: tuple[str, ...] = ()  # ISO 3166-1 alpha-2 codes claimed by this region
    continents: tuple[str, ...] = ()  # GeoIP continent codes (EU, NA, AS, ...)


@dataclass(frozen=True, slots=True)
class StaticService:
    """A service of a ``source: static`` cluster."""

    name: str
    namespace: str
    addresses: tuple[str, ...] = ()  # IPv4/IPv6 literals
    hostnames: tuple[str, ...] = ()  # load-balancer hostnames (AWS ELB style)
    ready: int = 1
    cluster_ip: str | None = None
    probe: Probe | None = None
    weight: int | None = None


@dataclass(frozen=True, slots=True)
class StaticIngress:
    """A federated Ingress of a ``source: static`` cluster."""

    name: str
    namespace: str
    hosts: tuple[str, ...]  # absolute names inside the zone
    addresses: tuple[str, ...] = ()
    hostnames: tuple[str, ...] = ()
    ready: int = 1
    probe: Probe | None = None


@dataclass(frozen=True, slots=True)
class Federation:
    """How a Kubernetes source decides which objects are federated."""

    mode: FederateMode = "annotation"
    annotation: str = "fedns.io/federate"
    label_selector: str = "fedns.io/federate=true"


@dataclass(frozen=True, slots=True)
class Cluster:
    name: str
    region: str | None  # None: read from Node labels (kubernetes source)
    zone: str | None
    source: Literal["static", "kubernetes"] = "static"
    networks: tuple[Network, ...] = ()
    services: tuple[StaticService, ...] = ()
    ingresses: tuple[StaticIngress, ...] = ()
    kubeconfig: str | None = None
    context: str | None = None
    federation: Federation = field(default_factory=Federation)
    default_probe: Literal["none", "http", "tcp"] = "none"
    default_probe_path: str = "/healthz"
    # the client knobs of a ``source: kubernetes`` cluster: its own ``kubernetes``
    # block over the top-level one, resolved by the loader (None: a static
    # cluster, or one built in code, which takes ``Config.kubernetes``); read
    # them through ``Config.kube_for``
    kubernetes: Kubernetes | None = None


@dataclass(frozen=True, slots=True)
class StaticRecord:
    name: str  # absolute
    rtype: str  # upper-case RR type mnemonic
    value: str  # rdata in presentation (zone-file) format
    ttl: int | None = None


@dataclass(frozen=True, slots=True)
class GeoNetwork:
    network: Network
    region: str
    zone: str | None = None


@dataclass(frozen=True, slots=True)
class Geo:
    database: str | None = None  # path to a GeoIP2/GeoLite2 City or Country MMDB
    networks: tuple[GeoNetwork, ...] = ()
    cluster_local: bool = False  # in-cluster clients get their own ClusterIP
    ipv4_cache_prefix: int = 24
    ipv6_cache_prefix: int = 56
    cache_size: int = 65536


@dataclass(frozen=True, slots=True)
class Listen:
    dns: tuple[tuple[str, int], ...] = (("127.0.0.1", 5353),)
    http: tuple[str, int] = ("127.0.0.1", 8053)


@dataclass(frozen=True, slots=True)
class Provider:
    """One external DNS service to publish the static view to."""

    type: Literal["coredns-etcd", "route53", "clouddns"]
    name: str  # unique label for logs/metrics, defaults to the type
    settings: tuple[tuple[str, object], ...] = ()  # provider-specific keys, validated by loader
    debounce: float = 1.0
    max_change_fraction: float = 0.3
    owner_id: str = "fedns"
    delegate: bool = False

    def get(self, key: str, default: object = None) -> object:
        for k, v in self.settings:
            if k == key:
                return v
        return default


@dataclass(frozen=True, slots=True)
class TsigKey:
    """An HMAC-SHA256 TSIG key (RFC 8945) that zone transfers must be signed with."""

    name: str  # absolute key name
    secret: str = field(repr=False)  # base64


@dataclass(frozen=True, slots=True)
class Server:
    """Protocol knobs of the authoritative server."""

    edns_udp_size: int = 1232
    max_answers: int = 8
    tcp_idle_timeout: float = 10.0
    tcp_max_connections: int = 1024
    tcp_max_per_client: int = 64
    identity: str | None = None  # answer id.server / hostname.bind in class CH
    version: str | None = None  # answer version.bind in class CH
    notify_allow: tuple[Network, ...] = ()
    transfer_allow: tuple[Network, ...] = ()
    transfer_tsig: TsigKey | None = None  # when set, AXFR/IXFR must be TSIG-signed
    # secondaries sent a NOTIFY (RFC 1996) on every new serial: (IP, port)
    also_notify: tuple[tuple[str, int], ...] = ()
    rrl_responses_per_second: int = 0  # 0 disables response-rate limiting
    rrl_slip: int = 2
    rrl_window: float = 15.0  # seconds a flooding account stays limited after it stops
    workers: int = 1
    # DNS Cookies (RFC 7873, RFC 9018 server cookies): a client cookie is echoed
    # with a server cookie keyed by ``cookie_secret`` (16 bytes; None: random
    # per process start, which replicas behind one address must not rely on)
    cookies: bool = True
    cookie_secret: bytes | None = field(default=None, repr=False)
    # secrets whose server cookies still validate but are replaced (RFC 9018
    # section 5 rollover); only with ``cookie_secret``, each 16 bytes, each once
    cookie_secret_previous: tuple[bytes, ...] = field(default=(), repr=False)
    # BADCOOKIE (UDP only) for a cookie without a valid server cookie
    require_server_cookie: bool = False


@dataclass(frozen=True, slots=True)
class Kubernetes:
    """Client knobs of the ``source: kubernetes`` clusters (config block
    ``kubernetes``, top-level or a cluster's own). healthwatch builds its
    ``KubeOptions`` from these; the defaults are the same, so a config without
    the block behaves as before."""

    connect_timeout: float = 5.0  # TCP/TLS connect of every API call
    request_timeout: float = 30.0  # read timeout of list calls
    watch_timeout: int = 300  # the API server's ``timeoutSeconds`` of a watch, whole seconds
    watch_idle_timeout: float = 75.0  # a watch silent this long is presumed hung and reopened
    backoff_base: float = 0.25  # first retry delay after an error
    backoff_cap: float = 30.0  # longest retry delay
    retry_after_cap: float = 60.0  # longest wait a ``Retry-After`` header may ask for
    heartbeat_interval: float = 2.0  # GET /version this often to notice a hung API server
    heartbeat_timeout: float = 2.0
    list_limit: int = 500  # page size of list calls
    # after a 401 or a failed TLS handshake, the kubeconfig is loaded again (exec plugins
    # run again) at most this often
    credential_reload_interval: float = 30.0
    # an exec credential plugin still running after this is killed, and the (re)load fails
    exec_timeout: float = 30.0


@dataclass(frozen=True, slots=True)
class ConfigDrain:
    """A drain declared in the config (top-level ``drains``): every replica
    that loads the config drains the same target, and a reload without it
    ends it. Never written to the state dir."""

    cluster: str
    service: str | None = None  # None: the whole cluster; else as ``split_service`` reads it
    reason: str = ""
    until: float | None = None  # Unix time it stops draining; None: while it is in the config


@dataclass(frozen=True, slots=True)
class Config:
    zone: str
    federation: str
    ttl: int = 30
    nameservers: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (ns name, glue addresses)
    listen: Listen = field(default_factory=Listen)
    regions: tuple[Region, ...] = ()
    health: Health = field(default_factory=Health)
    clusters: tuple[Cluster, ...] = ()
    records: tuple[StaticRecord, ...] = ()
    geo: Geo = field(default_factory=Geo)
    providers: tuple[Provider, ...] = ()
    server: Server = field(default_factory=Server)
    kubernetes: Kubernetes = field(default_factory=Kubernetes)
    state_dir: str | None = None  # API drains + last-known-good snapshot
    admin_email: str = "hostmaster"  # SOA RNAME, relative to zone unless absolute
    api_token: str | None = None  # required by mutating HTTP endpoints when set
    source_path: str = "<memory>"
    drains: tuple[ConfigDrain, ...] = ()  # top-level ``drains``

    def kube_for(self, cluster: Cluster) -> Kubernetes:
        """The client knobs of ``cluster``: the ones the loader resolved for it
        (its ``kubernetes`` block over the top-level one), else the top-level
        block (a Cluster built in code). The one place every consumer reads
        them, so none of them can miss a cluster's override."""
        return cluster.kubernetes if cluster.kubernetes is not None else self.kubernetes

    def region(self, name: str) -> Region | None:
        for r in self.regions:
            if r.name == name:
                return r
        return None

    def region_of_zone(self, zone: str) -> str | None:
        for r in self.regions:
            if zone in r.zones:
                return r.name
        return None
