"""Why a client gets the answer it gets (``GET /v1/explain``, ``fedns explain``).

The *what* comes from the serving code itself: a real query (dnslib, with an
ECS option when a subnet is given) goes through ``QueryHandler.handle`` with
the serving state's resolver, answer table and the server's locator, and the
reply is decoded. The handler that answers it is a sibling of the live one
(``_sibling``): the same class, locator and ``fast_path`` setting, the live
``ServingState``'s resolver and table, but its own unregistered metrics and
empty per-state caches. So an explain request is not counted in the
``fedns_dns_*`` metrics, and nothing it works out lands in the live caches
(a negative-answer entry there holds the counters of the handler that made
it). Only the locator's own cache sees the lookup.

The *why* reads the served Snapshot (``Resolver.snapshot``): the client's
locality and what placed it there (``Locator.describe``); for a geo-aware name
the fallback chain exactly as the planner walks it (``PlanContext.levels``)
with the shards behind the name at each level (a Service's, and the Ingress
shards with the name among their ``ShardStatus.hosts``: healthy or not); for
other names what kind of name it is (static, CNAME followed as the answer
follows it, wildcard, referral, NXDOMAIN, naming the Service or Ingress whose
name is unpublished because none of its shards is healthy).
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from dnslib import CLASS, EDNS0, QTYPE, RCODE, DNSQuestion, DNSRecord, EDNSOption

from config.model import Config
from config.names import in_zone
from dnsserver import wire
from dnsserver.handler import QueryHandler, ServingState
from dnsserver.metrics import DnsMetrics
from dnsserver.names import name_to_wire, wire_to_labels
from dnsserver.records import qtype_code
from dnsserver.resolver import Resolver
from healthwatch.model import HOST_KINDS, kind_of
from healthwatch.plan_groups import Level, PlanContext, absolute, global_name, ip_info
from healthwatch.plan_state import localities
from healthwatch.snapshot import ShardStatus, Snapshot

IP = ipaddress.IPv4Address | ipaddress.IPv6Address
Net = ipaddress.IPv4Network | ipaddress.IPv6Network
_EXPLAIN_UDP = 1232


class ExplainError(ValueError):
    """Bad input, or nothing to explain yet; ``status`` is the HTTP status."""

    def __init__(self, message: str, *, status: int = 400) -> None:
        self.status = status
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class Question:
    name: str  # absolute, lower-case
    qtype: int
    type_name: str
    client: IP
    subnet: Net | None


def parse_question(zone: str, name: str, qtype: str = "A", client: str = "127.0.0.1",
                   subnet: str | None = None) -> Question:
    """Check the inputs; ExplainError (400) names the first bad one."""
    text = name.strip()
    if not text or any(c.isspace() for c in text) or not text.isascii():
        raise ExplainError(f"name: {name!r} is not a domain name")
    absolute = text.lower() if text.endswith(".") else text.lower() + "."
    labels = absolute[:-1].split(".") if absolute != "." else []
    if any(not lab for lab in labels):
        raise ExplainError(f"name: {name!r} is not a domain name (empty label)")
    try:
        wname = name_to_wire(absolute)
    except ValueError as exc:
        raise ExplainError(f"name: {name!r} is not a domain name ({exc})") from exc
    zwire = name_to_wire(zone)
    if not (wname == zwire or (wname.endswith(zwire) and absolute.endswith("." + zone.lower()))):
        raise ExplainError(f"name: {absolute} is outside the zone {zone}")
    code = qtype_code(qtype.strip())
    if code is None or not 0 < code < 65536 or wire.meta_qtype(code) or code in (
            wire.T_AXFR, wire.T_IXFR):
        raise ExplainError(f"type: {qtype!r} is not a query type fedns answers")
    try:
        ip = ipaddress.ip_address(client.strip())
    except ValueError as exc:
        raise ExplainError(f"client: {client!r} is not an IP address") from exc
    net: Net | None = None
    if subnet is not None and subnet.strip():
        try:
            net = ipaddress.ip_network(subnet.strip(), strict=False)
        except ValueError as exc:
            raise ExplainError(f"subnet: {subnet!r} is not a CIDR subnet") from exc
    type_name = QTYPE.get(code, f"TYPE{code}")
    return Question(absolute, code, str(type_name), ip, net)


def query_bytes(q: Question) -> bytes:
    """The query a resolver would send: RD, EDNS0 (payload 1232), ECS if a subnet."""
    rec = DNSRecord(q=DNSQuestion(q.name, q.qtype, CLASS.IN))
    rec.header.id = 0x4558
    opts = []
    if q.subnet is not None:
        family = 1 if q.subnet.version == 4 else 2
        plen = q.subnet.prefixlen
        addr = q.subnet.network_address.packed[:(plen + 7) // 8]
        opts.append(EDNSOption(wire.OPT_ECS, bytes((0, family, plen, 0)) + addr))
    rec.add_ar(EDNS0(udp_len=_EXPLAIN_UDP, opts=opts))
    return bytes(rec.pack())


def _sibling(live: QueryHandler, state: ServingState, config: Config) -> QueryHandler:
    """A handler answering from ``state`` as ``live`` does, counting nowhere."""
    twin = QueryHandler(live.locator, DnsMetrics(None), config.server, fast_path=live.fast_path)
    twin.transfers = live.transfers
    twin.swap(dataclasses.replace(state, contexts={}, clients={}, negatives={},
                                   synthesized={}, wildcard_bytes={}))
    return twin


def explain(live: QueryHandler, config: Config, q: Question) -> dict[str, Any]:
    """The ``/v1/explain`` document for ``q`` (see the module docstring)."""
    state = live.state
    if state is None:
        raise ExplainError("the server has no Snapshot to serve yet", status=503)
    twin = _sibling(live, state, config)
    data = query_bytes(q)
    client = str(q.client)
    out = twin.handle(data, client, True)
    udp = twin.handle(data, client, False)
    if out is None:
        raise ExplainError("the server sent no reply to this query", status=500)
    reply = DNSRecord.parse(out)
    answer = _answer_doc(reply, q)
    answer["truncated_over_udp"] = bool(udp is not None and udp[2] & 0x02)
    where = _placement(twin, data, q)
    resolver = state.resolver
    snap = resolver.snapshot
    names = _follow(resolver, config, q.name, reply, where["locality"])
    kind, summary = _summary(answer, names, q)
    return {
        "question": {"name": q.name, "type": q.type_name, "client": client,
                     "subnet": None if q.subnet is None else str(q.subnet)},
        "serial": state.serial,
        "stale": snap.stale,
        "generated_at": snap.generated_at,
        "answer": answer,
        "client": where,
        "kind": kind,
        "summary": summary,
        "names": names,
    }


# -- the what -----------------------------------------------------------------------


def _zone_line(rr: Any) -> str:
    return (f"{str(rr.rname).lower()}\t{rr.ttl}\t{CLASS.get(rr.rclass)}\t"
            f"{QTYPE.get(rr.rtype)}\t{rr.rdata.toZone()}")


def _answer_doc(reply: DNSRecord, q: Question) -> dict[str, Any]:
    scope: int | None = None
    for rr in reply.ar:
        if rr.rtype == QTYPE.OPT:
            for opt in rr.rdata:
                if opt.code == wire.OPT_ECS and len(opt.data) >= 4:
                    scope = opt.data[3]
    return {
        "rcode": str(RCODE.get(reply.header.rcode)),
        "aa": bool(reply.header.aa),
        "answer": [_zone_line(rr) for rr in reply.rr],
        "authority": [_zone_line(rr) for rr in reply.auth],
        "ecs_scope": scope if q.subnet is not None else None,
    }


def _placement(twin: QueryHandler, data: bytes, q: Question) -> dict[str, Any]:
    """Where the handler placed the client (its own ``locate``) and on what."""
    query = wire.parse_query(data)
    ecs = query.edns.ecs if query.edns is not None else None
    loc, scope = twin.locate(ecs, str(q.client))
    doc: dict[str, Any] = {"locality": loc, "scope": scope}
    if ecs is not None and twin._ecs_locality(ecs.family, ecs.source, ecs.address) is not None:
        doc["by"] = f"ECS subnet {q.subnet}"
        address, prefix = ecs.address, ecs.source
    else:
        doc["by"] = f"source address {q.client}"
        if ecs is not None:
            doc["by"] += (f" (the ECS subnet {q.subnet} is private and in no configured"
                          " network)")
        address, prefix = wire.packed_address(str(q.client)), None
    describe = getattr(twin.locator, "describe", None)
    if describe is None:
        doc.update(evidence="unknown", detail="the locator cannot say why")
        return doc
    placed = describe(address, prefix)
    doc.update(evidence=placed.by, detail=placed.detail)
    if placed.locality != loc:
        doc["note"] = (f"the locator's cached result {loc or 'unknown'} differs from a fresh "
                       f"look ({placed.locality or 'unknown'}); the answer used the cached one")
    return doc


# -- the why ------------------------------------------------------------------------


def _follow(resolver: Resolver, config: Config, qname: str, reply: DNSRecord,
            locality: str) -> list[dict[str, Any]]:
    """Each name the answer passes through (CNAMEs followed as in the answer)."""
    cnames: dict[str, str] = {}
    values: dict[str, set[str]] = {}
    for rr in reply.rr:
        owner = str(rr.rname).lower()
        value = str(rr.rdata.toZone()).lower()
        values.setdefault(owner, set()).add(value)
        if rr.rtype == QTYPE.CNAME:
            cnames.setdefault(owner, value)
    out: list[dict[str, Any]] = []
    name = qname
    seen = set()
    while name not in seen:
        seen.add(name)
        out.append(_name_doc(resolver, config, name, locality, values.get(name, set())))
        target = cnames.get(name)
        if target is None:
            break
        name = target
    return out


def _name_doc(resolver: Resolver, config: Config, name: str, locality: str,
              answered: set[str]) -> dict[str, Any]:
    doc: dict[str, Any] = {"name": name}
    try:
        wname = name_to_wire(name)
    except ValueError:
        return {**doc, "kind": "outside", "detail": "not a valid name"}
    if not resolver.in_zone(wname):
        return {**doc, "kind": "outside",
                "detail": "outside the zone: fedns does not answer for it (the resolver "
                          "follows the CNAME elsewhere)"}
    cut = resolver.top_cut(wname)
    if cut is not None:
        cut_name = "".join(x.decode() + "." for x in wire_to_labels(cut))
        return {**doc, "kind": "referral",
                "detail": f"at or below the zone cut {cut_name}: a referral to its NS set"}
    snap = resolver.snapshot
    if name in snap.geo:
        return {**doc, "kind": "geo", "geo": _geo_doc(snap, config, name, locality, answered)}
    if resolver.exists(wname):
        static = [r.zone_line() for r in snap.records if r.name == name]
        doc.update(kind="static", records=static,
                   detail="locality-free records from the Snapshot (static or service-level)")
        level = _service_level(snap, config, name)
        if level is not None:
            doc["service_level"] = level
        return doc
    wild = resolver.wildcard_of(wname)
    if wild is not None:
        wild_name = "".join(x.decode() + "." for x in wire_to_labels(wild))
        doc.update(kind="wildcard", wildcard=wild_name,
                   detail=f"no such name: synthesized from the wildcard {wild_name}")
        if wild_name in snap.geo:
            doc["geo"] = _geo_doc(snap, config, wild_name, locality, answered)
        return doc
    service = _service_of(config, name)
    if service is not None and any(s.service == service for s in snap.shards):
        return {**doc, "kind": "nxdomain", "service": service,
                "detail": "not published: every shard of the service is unhealthy and "
                          "health.when_all_unhealthy is nxdomain"}
    hosting = _unpublished_ingresses(resolver, snap, name)
    if hosting:
        return {**doc, "kind": "nxdomain",
                "service": ", ".join(sorted({s.service for s in hosting})),
                "shards": [_shard_doc(s) for s in hosting],
                "detail": "not published: every shard of the Ingress is unhealthy and "
                          "health.when_all_unhealthy is nxdomain"}
    return {**doc, "kind": "nxdomain", "detail": "no such name in the zone"}


def _unpublished_ingresses(resolver: Resolver, snap: Snapshot, name: str) -> list[ShardStatus]:
    """The Ingress shards that would answer the missing ``name`` if published:
    with ``name`` as a host, or a wildcard host ``*.x`` that would cover it
    (``name`` below ``x``, and its closest encloser ``x`` or above: no existing
    name in between, RFC 4592)."""
    encloser = resolver.closest_encloser(name_to_wire(name)) or b""
    out = []
    for s in snap.shards:
        for host in map(absolute, s.hosts):
            base = host[2:]
            if host == name or (host.startswith("*.") and name != base
                                and in_zone(name, base)
                                and len(encloser) <= len(name_to_wire(base))):
                out.append(s)
                break
    return out


def _service_of(config: Config, name: str) -> str | None:
    """``namespace/name`` when ``name`` is a Service's global name."""
    suffix = global_name(config, "", "").lstrip(".")  # "F.svc.Z"
    if not name.endswith("." + suffix):
        return None
    parts = name[:-len(suffix) - 1].split(".")
    return f"{parts[1]}/{parts[0]}" if len(parts) == 2 else None


def _service_level(snap: Snapshot, config: Config, name: str) -> dict[str, Any] | None:
    """A Service's AZ- or region-level name: its level and shards there (SPEC 2)."""
    zone = config.zone.lower()
    marker = f".{config.federation}.svc.".lower()
    head, sep, rest = name.partition(marker)
    parts = head.split(".")
    if not sep or len(parts) != 2 or not rest.endswith(zone):
        return None
    where = rest[:-len(zone)].rstrip(".").split(".")
    service = f"{parts[1]}/{parts[0]}"
    if where == [""]:
        return None
    if len(where) == 1:
        kind, other = "region", "CNAME to the global name"
    elif len(where) == 2:
        kind, other = "zone", "CNAME to the region-level name"
    else:
        return None
    level = f"{kind}:{where[0]}"
    shards = [s for s in snap.shards if s.service == service
              and (s.region if kind == "region" else s.zone) == where[0]]
    return {"service": service, "level": level,
            "rule": f"A/AAAA of the healthy shards in {level.partition(':')[2]}, else {other}",
            "shards": [_shard_doc(s) for s in shards],
            "healthy": sum(s.healthy for s in shards)}


def _shard_doc(s: ShardStatus) -> dict[str, Any]:
    return {"service": s.service, "cluster": s.cluster, "region": s.region, "zone": s.zone,
            "healthy": s.healthy, "reason": s.reason, "drained": s.drained,
            "addresses": list(s.addresses), "hostnames": list(s.hostnames),
            "hosts": list(s.hosts)}


def _shard_values(s: ShardStatus) -> set[str]:
    """The record values the shard's addresses and hostnames are published as."""
    return {*(info[2] for a in s.addresses if (info := ip_info(a))), *map(absolute, s.hostnames)}


def _geo_shards(snap: Snapshot, config: Config, name: str) -> tuple[str, list[ShardStatus]]:
    """The shards behind the geo-aware ``name``, as the planner groups them
    (``Planner._group_names``): the Service whose global name it is and the
    Ingress shards with ``name`` among their hosts (an Ingress host equal to a
    global name merges with the Service), healthy or not.

    ``name`` is a name the Snapshot publishes, so a wildcard host matches as
    the owner ``*.x`` it is published under: ``_name_doc`` passes that owner
    when ``Resolver.wildcard_of`` synthesizes the answer from it, and an
    existing name is not covered by a wildcard (RFC 4592).

    An Ingress shard without hosts comes from a Snapshot persisted before
    ``ShardStatus.hosts`` existed: it is matched, as then, by its addresses
    appearing in the name's published answers (so an unhealthy one is missed
    until the first live plan replaces that Snapshot)."""
    service = _service_of(config, name)
    out = [s for s in snap.shards if service is not None and s.service == service]
    ingresses = [s for s in snap.shards if kind_of(s.service) in HOST_KINDS]
    out += [s for s in ingresses if name in {absolute(h) for h in s.hosts}]
    unknown = [s for s in ingresses if not s.hosts]
    if unknown:
        published: set[str] = set()
        for ans in snap.geo.get(name, {}).values():
            published.update(r.value.lower() for r in ans)
        out += [s for s in unknown if _shard_values(s) & published]
    label = service or ", ".join(sorted({s.service for s in out})) or "-"
    return label, out


def plan_context(config: Config, snap: Snapshot) -> PlanContext:
    """The planner's context for ``snap``'s localities (as ``plan_state`` makes it)."""
    regions, zones = localities(config, {(s.region, s.zone) for s in snap.shards})
    return PlanContext(config, regions, zones)


def _level_name(level: Level) -> str:
    kind, value = level
    return "any healthy shard" if kind == "any" else f"{kind}:{value}"


def _at_level(level: Level, shards: Sequence[ShardStatus]) -> list[ShardStatus]:
    kind, value = level
    if kind == "zone":
        return [s for s in shards if s.zone == value]
    if kind == "region":
        return [s for s in shards if s.region == value]
    if kind == "cluster":
        return [s for s in shards if s.cluster == value]
    return list(shards)


def _geo_doc(snap: Snapshot, config: Config, name: str, locality: str,
             answered: set[str]) -> dict[str, Any]:
    ctx = plan_context(config, snap)
    service, shards = _geo_shards(snap, config, name)
    home: tuple[str, str] | None = None
    kind, _, value = locality.partition(":")
    if kind == "cluster":  # as ``plan_groups._cluster_home``: the shards' placement first
        home = next(((s.zone, s.region) for s in shards if s.cluster == value), None)
    levels = ctx.levels(locality, home)
    if not answered:  # e.g. NODATA for this type: match the published answer instead
        answered = {r.value.lower() for r in snap.geo_answer(name, locality) or ()}
    lb_values = set().union(*(_shard_values(s) for s in shards)) if shards else set()
    docs: list[dict[str, Any]] = []
    answering: str | None = None
    planned: str | None = None
    for level in levels:
        here = _at_level(level, shards)
        healthy = [s for s in here if s.healthy]
        hit = False
        if healthy and answering is None:
            if level[0] == "cluster":  # ClusterIPs: not in the Snapshot's shard status
                hit = bool(answered) and not answered & lb_values
            else:
                hit = bool(answered & set().union(*(_shard_values(s) for s in healthy)))
        if healthy and planned is None and level[0] != "cluster":
            planned = _level_name(level)
        if hit:
            answering = _level_name(level)
        docs.append({"level": _level_name(level), "answered": hit, "healthy": len(healthy),
                     "shards": [_shard_doc(s) for s in here]})
    doc: dict[str, Any] = {"service": service, "locality": locality, "chain": docs,
                           "answered_by": answering}
    if not any(s.healthy for s in shards):
        doc["note"] = ("no healthy shard anywhere: health.when_all_unhealthy is "
                       f"{config.health.when_all_unhealthy} (every shard with an address)")
    elif answering is None:
        doc["note"] = (f"no level's healthy shards are in the answer (the planner would pick "
                       f"{planned}); the served Snapshot may be moving")
    return doc


def _summary(answer: dict[str, Any], names: list[dict[str, Any]],
             q: Question) -> tuple[str, str]:
    rcode = answer["rcode"]
    first = names[0]
    last = names[-1]
    hops = " -> ".join(n["name"] for n in names)
    if first["kind"] == "referral":
        return "referral", f"{q.name} is delegated: {first['detail']}"
    if rcode == "NXDOMAIN":
        return "nxdomain", f"NXDOMAIN: {last['detail']}" + (
            f" (via {hops})" if len(names) > 1 else "")
    if rcode != "NOERROR":
        return rcode.lower(), f"{rcode} for {q.name} {q.type_name}"
    kind = "cname" if len(names) > 1 else first["kind"]
    via = f"{hops}: " if len(names) > 1 else ""
    if not answer["answer"]:
        return "nodata", f"{via}no {q.type_name} records (NODATA)"
    if last["kind"] == "geo" or "geo" in last:
        geo = last["geo"]
        by = geo.get("answered_by") or "no level (see note)"
        return kind, (f"{via}{last['name']} is geo-aware ({geo['service']}); a client in "
                      f"{geo['locality'] or 'an unknown locality'} is answered by {by}")
    if last["kind"] == "wildcard":
        return kind, f"{via}{last['detail']}"
    if last["kind"] == "outside":
        return kind, f"{via}the chain leaves the zone at {last['name']}"
    return kind, f"{via}{last['name']} has locality-free records (same answer for everyone)"
