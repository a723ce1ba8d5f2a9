"""Pure translation of digested cluster objects into ``ShardSpec``s.

An Ingress and an HTTPRoute (Gateway API) both become host shards (SPEC §2,
"Ingress hosts"): their names are their hosts inside the zone, checked by the
same ``hosts.classify``, and they are probed alike. They differ in where the
addresses come from: an Ingress's own load balancer status, an HTTPRoute's
Gateways that accepted it (``attachment``). A route's hostnames are also
narrowed to those its Gateways' listeners accept (``listener_hostname``), as
the Gateway API routes them: a Gateway's addresses answer only for names it
serves. Their probes go where they serve (``Serving``): an Ingress's
controller serves 80 and 443, a route's listeners name their port and
protocol.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from config.model import Cluster, Config, Federation, Probe
from healthwatch.kube.errors import ProbeSpecError
from healthwatch.kube.facts import (
    GatewayFacts,
    IngressFacts,
    Key,
    Labels,
    Listener,
    Marker,
    NodeFacts,
    RouteFacts,
    ServiceFacts,
)
from healthwatch.kube.hosts import HostRules, Refused, classify, not_served, probe_host
from healthwatch.kube.probes import SchemePorts, parse_probe
from healthwatch.kube.selector import parse_selector
from healthwatch.model import ShardSpec

TRUE_WORDS = frozenset({"true", "yes", "1"})


@dataclass(frozen=True, slots=True)
class Placement:
    region: str | None
    zone: str | None


@dataclass(frozen=True, slots=True)
class ShardContext:
    """What a shard needs to know about its cluster besides the object."""

    cluster: str
    zone_apex: str  # config zone, absolute lower-case
    federation: str  # config federation name, lower-case
    mode: str  # Federation.mode
    default_probe: str  # "none" | "http" | "tcp"
    default_probe_path: str
    placement: Placement


def make_marker(federation: Federation) -> Marker:
    """The per-object federation test for annotation and label modes.

    In ``serviceexport`` mode Services are federated by their ServiceExport
    (joined later) and Ingresses and HTTPRoutes by the annotation.
    """
    if federation.mode == "label":
        selector = parse_selector(federation.label_selector)

        def by_label(labels: Labels, annotations: Labels) -> bool:
            return selector.matches(labels)

        return by_label
    key = federation.annotation

    def by_annotation(labels: Labels, annotations: Labels) -> bool:
        return annotations.get(key, "").strip().lower() in TRUE_WORDS

    return by_annotation


def _majority(values: Iterable[str | None]) -> str | None:
    counts = Counter(v for v in values if v)
    if not counts:
        return None
    best = max(counts.values())
    return min(v for v, n in counts.items() if n == best)  # ties: alphabetical


def placement(cluster: Cluster, config: Config, nodes: Iterable[NodeFacts]) -> Placement:
    """Region/AZ from the config, else the majority of the Nodes' topology labels."""
    nodes = list(nodes)
    zone = cluster.zone or _majority(n.zone for n in nodes)
    region = cluster.region
    if region is None and cluster.zone is not None:
        region = config.region_of_zone(cluster.zone)
    if region is None:
        region = _majority(n.region for n in nodes)
    return Placement(region=region, zone=zone)


def _weight(raw: str | None) -> int | None:
    if raw is None or not raw.strip().isdigit():
        return None
    return int(raw.strip())


def _probe(
    raw: str | None,
    ctx: ShardContext,
    *,
    target: str | None,
    ports: SchemePorts,
    host: str | None,
    https_default: bool = False,
    log: logging.Logger,
    what: str,
) -> Probe | None:
    """The probe the annotation ``raw`` asks for, else (none, or malformed:
    logged) the cluster's default; None without a ``target`` to probe."""
    if target is None:
        return None
    if raw is not None:
        try:
            return parse_probe(raw, target=target, default_port=ports, host=host)
        except ProbeSpecError as e:
            log.warning("bad_probe_annotation object=%s error=%r using=default", what, str(e))
    return _default_probe(ctx, target=target, ports=ports, host=host, https=https_default)


def _default_probe(
    ctx: ShardContext, *, target: str, ports: SchemePorts, host: str | None, https: bool
) -> Probe | None:
    """The cluster's ``default_probe``. Its HTTP probe asks with HTTPS when
    ``https`` (the object serves nothing else, so plain HTTP would always
    fail); a TCP one needs a port."""
    if ctx.default_probe == "http":
        scheme = "https" if https else "http"
        spec = f"{scheme}:{ctx.default_probe_path}"
        return parse_probe(spec, target=target, default_port=ports, host=host)
    if ctx.default_probe == "tcp" and ports.tcp is not None:
        return parse_probe("tcp", target=target, default_port=ports)
    return None


def _target(addresses: tuple[str, ...], hostnames: tuple[str, ...]) -> str | None:
    if addresses:
        return addresses[0]
    if hostnames:
        return hostnames[0].rstrip(".")
    return None


def service_shard(
    svc: ServiceFacts,
    ctx: ShardContext,
    *,
    ready: int,
    exported: bool,
    log: logging.Logger,
) -> ShardSpec | None:
    """The shard of a Service, or None when it is not a federated LoadBalancer."""
    federated = exported if ctx.mode == "serviceexport" else svc.marked
    if not federated or not svc.load_balancer:
        return None
    return ShardSpec(
        cluster=ctx.cluster,
        kind="service",
        namespace=svc.namespace,
        name=svc.name,
        addresses=svc.addresses,
        hostnames=svc.hostnames,
        ready=ready,
        cluster_ip=svc.cluster_ip,
        probe=_probe(
            svc.probe,
            ctx,
            target=_target(svc.addresses, svc.hostnames),
            ports=SchemePorts.every(svc.port),
            host=None,
            log=log,
            what=f"service/{svc.namespace}/{svc.name}",
        ),
        weight=_weight(svc.weight),
        region=ctx.placement.region,
        zone=ctx.placement.zone,
        drain=svc.drain,
    )


def ingress_hosts(ing: IngressFacts, ctx: ShardContext) -> tuple[tuple[str, ...],
                                                                 tuple[Refused, ...]]:
    """The rule hosts of ``ing`` that become names, and the refused ones
    (see ``healthwatch.kube.hosts``)."""
    return classify(ing.hosts, HostRules(ctx.zone_apex, ctx.federation))


def ingress_shard(
    ing: IngressFacts,
    ctx: ShardContext,
    *,
    ready: int | None,
    log: logging.Logger,
) -> ShardSpec | None:
    """The shard of a federated Ingress with at least one rule host inside the zone.

    ``ready`` sums the ready endpoints of its backend Services; None when it
    has no Service backends (then it counts as one ready endpoint).
    """
    if not ing.marked:
        return None
    hosts, _ = ingress_hosts(ing, ctx)
    if not hosts:
        return None
    return ShardSpec(
        cluster=ctx.cluster,
        kind="ingress",
        namespace=ing.namespace,
        name=ing.name,
        addresses=ing.addresses,
        hostnames=ing.hostnames,
        ready=1 if ready is None else ready,
        hosts=hosts,
        probe=_host_probe(ing.probe, ctx, ing.addresses, ing.hostnames, hosts,
                          serving=ingress_serving(ing), log=log,
                          what=f"ingress/{ing.namespace}/{ing.name}"),
        weight=_weight(ing.weight),
        region=ctx.placement.region,
        zone=ctx.placement.zone,
        drain=ing.drain,
    )


@dataclass(frozen=True, slots=True)
class Serving:
    """Where a host shard's object serves clients, as its probes need it: the
    port a probe that names none goes to, per scheme, and whether it serves
    only HTTPS (then the cluster's default HTTP probe asks with HTTPS)."""

    ports: SchemePorts
    https_only: bool = False


def ingress_serving(ing: IngressFacts) -> Serving:
    """An Ingress's controller serves HTTP on 80 and HTTPS on 443 (the
    schemes' own ports); a TCP probe goes to 443 when it has TLS, else 80."""
    return Serving(SchemePorts(tcp=443 if ing.tls else 80))


def _host_probe(
    raw: str | None,
    ctx: ShardContext,
    addresses: tuple[str, ...],
    hostnames: tuple[str, ...],
    hosts: tuple[str, ...],
    *,
    serving: Serving,
    log: logging.Logger,
    what: str,
) -> Probe | None:
    """The probe of a host shard: HTTP(S) probes send a host of the shard as
    ``Host:`` (and TLS SNI) so the Ingress or Gateway routes them like a
    client's request; a probe that names no port goes where ``serving`` says
    the object serves its scheme."""
    return _probe(
        raw,
        ctx,
        target=_target(addresses, hostnames),
        ports=serving.ports,
        host=probe_host(hosts),
        https_default=serving.https_only,
        log=log,
        what=what,
    )


@dataclass(frozen=True, slots=True)
class Attachment:
    """What an HTTPRoute gets from the Gateways that accepted it."""

    accepted: bool  # some parentRef is Accepted=True: the route serves traffic
    addresses: tuple[str, ...] = ()  # the union of those Gateways' addresses
    hostnames: tuple[str, ...] = ()
    listeners: tuple[Listener, ...] = ()  # the listeners its parentRefs name
    known: bool = False  # some Gateway that accepted it is known (listed, not deleted)


def attachment(route: RouteFacts, gateways: Mapping[Key, GatewayFacts]) -> Attachment:
    """Join ``route`` with its Gateways. Only parentRefs whose status says
    ``Accepted`` count (a Gateway that did not accept the route does not route
    to it); a ``sectionName`` picks one listener, else all count. A Gateway
    that is gone (or not listed yet) adds nothing."""
    accepted = known = False
    addresses: dict[str, None] = {}
    hostnames: dict[str, None] = {}
    listeners: dict[Listener, None] = {}
    for ref in route.parents:
        if not ref.accepted:
            continue
        accepted = True
        gw = gateways.get(ref.gateway)
        if gw is None:
            continue
        known = True
        addresses.update(dict.fromkeys(gw.addresses))
        hostnames.update(dict.fromkeys(gw.hostnames))
        listeners.update(dict.fromkeys(
            ls for ls in gw.listeners if ref.section is None or ls.name == ref.section))
    return Attachment(accepted, tuple(addresses), tuple(hostnames), tuple(listeners), known)


def _covers(wildcard: str, host: str) -> bool:
    """Whether the wildcard hostname ``*.S`` matches ``host``: ``host`` lies
    below ``S`` by at least one label (``S`` itself is no match; a wildcard
    ``*.a.S`` is, since every name it stands for is)."""
    suffix = wildcard[1:]  # ".S"
    return host.endswith(suffix) and len(host) > len(suffix)


def listener_hostname(host: str, listener: str | None) -> str | None:
    """The hostname a route's ``host`` gives on a listener whose hostname is
    ``listener`` (both absolute, lower-case), or None when the listener does
    not accept it. As the Gateway API matches them, it is their intersection:
    a listener without a hostname accepts every host; equal names match; a
    wildcard listener ``*.S`` accepts the hosts below ``S``; a wildcard route
    host ``*.S`` on a listener below ``S`` narrows to the listener's name."""
    if listener is None or host == listener:
        return host
    if listener.startswith("*.") and _covers(listener, host):
        return host
    if host.startswith("*.") and _covers(host, listener):
        return listener
    return None


def _accepts(listener: Listener, hosts: tuple[str, ...]) -> bool:
    return any(listener_hostname(h, listener.hostname) is not None for h in hosts)


def serving_listeners(route: RouteFacts, att: Attachment) -> tuple[Listener, ...]:
    """The listeners of ``att`` that serve ``route``: those that accept one of
    its hostnames, or all when it has none (it takes theirs)."""
    if not route.hostnames:
        return att.listeners
    return tuple(ls for ls in att.listeners if _accepts(ls, route.hostnames))


def wanted_hosts(route: RouteFacts, att: Attachment) -> tuple[str, ...]:
    """The hosts ``route`` asks for. With ``spec.hostnames``: on each listener
    it attaches to, their intersection with the listener's (``listener_hostname``),
    united over the listeners, so a hostname no listener accepts is no name.
    While no Gateway that accepted it is known, there is nothing to narrow
    against (and no address to answer with): its hostnames as they are, so
    the shard stays, unhealthy, as when its Gateway is deleted. A route
    without hostnames serves every host of its listeners, so then their
    hostnames (a listener without one names no host)."""
    if not route.hostnames:
        return tuple(ls.hostname for ls in att.listeners if ls.hostname)
    if not att.known:
        return route.hostnames
    return tuple(dict.fromkeys(
        name for host in route.hostnames for ls in att.listeners
        if (name := listener_hostname(host, ls.hostname)) is not None))


def unserved_hosts(route: RouteFacts, att: Attachment) -> tuple[str, ...]:
    """The hostnames of ``route`` that none of the listeners it attaches to
    accepts (none while no Gateway that accepted it is known)."""
    if not att.known:
        return ()
    return tuple(h for h in route.hostnames
                 if not any(listener_hostname(h, ls.hostname) is not None
                            for ls in att.listeners))


def route_hosts(route: RouteFacts, att: Attachment, ctx: ShardContext) -> tuple[
        tuple[str, ...], tuple[Refused, ...]]:
    """The ``wanted_hosts`` of ``route`` that become names, and the refused
    ones (see ``healthwatch.kube.hosts``), with the hostnames no listener
    accepts among them (``no_matching_listener``, when inside the zone)."""
    rules = HostRules(ctx.zone_apex, ctx.federation)
    hosts, refused = classify(wanted_hosts(route, att), rules)
    return hosts, refused + not_served(unserved_hosts(route, att), rules)


def _shared_port(listeners: tuple[Listener, ...]) -> int | None:
    """The port every one of ``listeners`` is on, or None (none, or several)."""
    ports = {ls.port for ls in listeners}
    return ports.pop() if len(ports) == 1 else None


def _all_https(listeners: tuple[Listener, ...]) -> bool:
    return bool(listeners) and all(ls.https for ls in listeners)


def _all_http(listeners: tuple[Listener, ...]) -> bool:
    return bool(listeners) and not any(ls.https for ls in listeners)


def route_tcp_port(listeners: tuple[Listener, ...]) -> int:
    """Where a TCP probe of a route goes when it names no port: the port that
    the ``listeners`` serving it share. Listeners on different ports (or none
    known) leave no one port to pick; then, as for an Ingress, 443 when every
    one is HTTPS, else 80."""
    shared = _shared_port(listeners)
    if shared is not None:
        return shared
    return 443 if _all_https(listeners) else 80


def route_serving(listeners: tuple[Listener, ...]) -> Serving:
    """Where a route served by ``listeners`` serves (``Serving``). An HTTP(S)
    probe without a port goes to their shared port when they all speak its
    scheme (HTTP listeners for http, HTTPS ones for https); otherwise (ports
    differ, or they do not speak it) to the scheme's own port, as for an
    Ingress. HTTPS-only listeners make the default HTTP probe an HTTPS one:
    such a Gateway usually serves no plain HTTP at all."""
    shared = _shared_port(listeners)
    https = _all_https(listeners)
    return Serving(
        SchemePorts(tcp=route_tcp_port(listeners),
                    http=shared if _all_http(listeners) else None,
                    https=shared if https else None),
        https_only=https,
    )


def httproute_shard(
    route: RouteFacts,
    att: Attachment,
    ctx: ShardContext,
    *,
    ready: int | None,
    log: logging.Logger,
) -> ShardSpec | None:
    """The shard of a federated HTTPRoute that a Gateway accepted and that has
    a host inside the zone, else None. Its addresses are those of the accepted
    Gateways (none yet, or its Gateway gone: a shard without an address, which
    is unhealthy). ``ready`` sums the ready endpoints of the backend Services
    that get traffic; None when it has none (then it counts as one, as an
    Ingress does). Its probe goes where ``route_serving`` says its serving
    listeners serve."""
    if not route.marked or not att.accepted:
        return None
    hosts, _ = route_hosts(route, att, ctx)
    if not hosts:
        return None
    return ShardSpec(
        cluster=ctx.cluster,
        kind="httproute",
        namespace=route.namespace,
        name=route.name,
        addresses=att.addresses,
        hostnames=att.hostnames,
        ready=1 if ready is None else ready,
        hosts=hosts,
        probe=_host_probe(route.probe, ctx, att.addresses, att.hostnames, hosts,
                          serving=route_serving(serving_listeners(route, att)), log=log,
                          what=f"httproute/{route.namespace}/{route.name}"),
        weight=_weight(route.weight),
        region=ctx.placement.region,
        zone=ctx.placement.zone,
        drain=route.drain,
    )
