"""Parsed, schema-checked YAML -> model.Config, with the semantic checks.

Every check reports through the context and carries on, so one run finds
every problem; the caller raises if any were found.
"""

from __future__ import annotations

import base64
import ipaddress
import os
import re
from typing import TypeVar

from config import names
from config.build_clusters import addresses, checked, cluster, networks
from config.build_drains import drains
from config.build_kubernetes import top_level
from config.build_providers import provider
from config.model import (
    Config,
    Geo,
    GeoNetwork,
    Health,
    Listen,
    Region,
    Server,
    StaticRecord,
    TsigKey,
)
from config.node import Ctx, Node
from config.records import canonical
from config.yamltree import Path

T = TypeVar("T")
_ENV = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")
_MAILBOX = re.compile(r"^[A-Za-z0-9_+-]+(\.[A-Za-z0-9_+-]+)*$")


def build(ctx: Ctx) -> Config:
    root = Node(ctx, ctx.tree.data, ())
    zone = _zone(root)
    federation = root.text("federation")
    ctx.federation = federation.lower() if federation else None
    regions = _regions(root)
    nameservers = _nameservers(root)
    kube = top_level(root)  # before the clusters: theirs override it
    clusters = tuple(c for c in (cluster(n, kube) for n in root.nodes("clusters"))
                     if c is not None)
    _unique(ctx, [(n.at("name"), n.text("name")) for n in root.nodes("clusters")], "cluster")
    records = _records(root)
    _ingress_conflicts(ctx, root, records)
    pairs = [(n, provider(n, bool(nameservers))) for n in root.nodes("providers")]
    providers = tuple(p for _, p in pairs if p is not None)
    _unique(
        ctx,
        [(n.at("name") if n.has("name") else n.at("type"), p.name) for n, p in pairs if p],
        "provider",
    )
    dflt = Config(zone="", federation="")
    state_dir = root.text("state_dir")
    listen = _listen(root)
    api_token = _api_token(root)
    _http_exposure(root, listen, api_token)
    return Config(
        zone=zone or "invalid.",
        federation=ctx.federation or "",
        ttl=_or(root.integer("ttl"), dflt.ttl),
        nameservers=nameservers,
        listen=listen,
        regions=regions,
        health=_health(root),
        clusters=clusters,
        records=records,
        geo=_geo(root),
        providers=providers,
        server=_server(root),
        kubernetes=kube.knobs,
        state_dir=ctx.file_path(state_dir) if state_dir else None,
        admin_email=_admin_email(root),
        api_token=api_token,
        source_path=ctx.tree.file,
        drains=drains(root),
    )


def _or(value: T | None, default: T) -> T:
    return default if value is None else value


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _unique(ctx: Ctx, items: list[tuple[Path, str | None]], what: str) -> None:
    first: dict[str, Path] = {}
    for path, name in items:
        if name is None:
            continue
        if name in first:
            line = ctx.tree.pos(first[name]).line
            ctx.error(path, f"duplicate {what} name {name!r} (first at line {line})")
        first.setdefault(name, path)


def _zone(root: Node) -> str | None:
    text = root.text("zone")
    if text is None:
        return None
    zone = checked(root, root.at("zone"), text, names.absolute)
    if zone == ".":
        root.ctx.error(root.at("zone"), "the zone cannot be the root")
        zone = None
    root.ctx.zone = zone
    return zone


def _regions(root: Node) -> tuple[Region, ...]:
    ctx = root.ctx
    rnode = root.node("regions")
    if rnode is None:
        return ()
    zone_owner: dict[str, str] = {}
    claims: dict[tuple[str, str], str] = {}
    out: list[Region] = []
    built: list[tuple[Region, Node]] = []
    for name, _, _ in rnode.entries():
        node = rnode.node(name)
        if node is None:
            continue
        region = name.lower()
        zones: list[str] = []
        for zpath, az in node.texts("zones"):
            az = az.lower()
            if az in zone_owner:
                ctx.error(zpath, f"zone {az!r} is already in region {zone_owner[az]!r}")
            else:
                zone_owner[az] = region
                zones.append(az)
        ctx.region_zones[region] = tuple(zones)
        for key in ("countries", "continents"):
            for cpath, code in node.texts(key):
                owner = claims.setdefault((key, code.upper()), region)
                if owner != region:
                    ctx.error(cpath, f"{code.upper()} is already claimed by region {owner!r}")
        loc = node.raw("location")
        lat = lon = 0.0
        if isinstance(loc, list) and len(loc) == 2 and all(_is_number(v) for v in loc):
            lat, lon = float(loc[0]), float(loc[1])
        built.append(
            (
                Region(
                    name=region,
                    location=(float(lat), float(lon)),
                    zones=tuple(zones),
                    fallback=tuple(f.lower() for _, f in node.texts("fallback")),
                    countries=tuple(c.upper() for _, c in node.texts("countries")),
                    continents=tuple(c.upper() for _, c in node.texts("continents")),
                ),
                node,
            )
        )
    for r, node in built:
        out.append(r)
        seen: set[str] = set()
        for fpath, target in node.texts("fallback"):
            target = target.lower()
            if target == r.name:
                ctx.error(fpath, "a region cannot fall back to itself")
            elif target not in ctx.region_zones:
                ctx.error(fpath, f"unknown region {target!r} in fallback")
            elif target in seen:
                ctx.error(fpath, f"region {target!r} is listed twice")
            seen.add(target)
    return tuple(out)


def _nameservers(root: Node) -> tuple[tuple[str, tuple[str, ...]], ...]:
    ctx, zone = root.ctx, root.ctx.zone
    node = root.node("nameservers")
    if node is None:
        return ()
    out: dict[str, tuple[str, ...]] = {}
    for key, value, path in node.entries():
        name = checked(node, path, key, lambda k: names.absolute(k, zone))
        glue = addresses(node, key)
        if name is None or zone is None:
            continue
        if name in out:
            ctx.error(path, f"nameserver {name} is listed twice", at_key=True)
            continue
        inside = names.in_zone(name, zone)
        if inside and not value:
            ctx.error(
                path, f"nameserver {name} is inside the zone and needs glue addresses", at_key=True
            )
        elif not inside and value:
            ctx.error(path, f"glue is only allowed for nameservers inside {zone}", at_key=True)
        out[name] = glue
    return tuple(out.items())


def _listen(root: Node) -> Listen:
    node = root.node("listen")
    dflt = Listen()
    if node is None:
        return dflt
    dns: list[tuple[str, int]] = []
    for path, text in node.texts("dns"):
        hp = checked(node, path, text, _listen_addr)
        if hp in dns:
            node.ctx.error(path, f"{text!r} is listed twice")
        elif hp is not None:
            dns.append(hp)
    http = node.text("http")
    hp = checked(node, node.at("http"), http, _listen_addr) if http else None
    return Listen(dns=tuple(dns) if node.has("dns") else dflt.dns, http=hp or dflt.http)


def _http_exposure(root: Node, listen: Listen, api_token: str | None) -> None:
    """The HTTP API can drain clusters: off loopback it needs ``api_token``."""
    if api_token is not None or ipaddress.ip_address(listen.http[0]).is_loopback:
        return
    node = root.node("listen")
    at = node.at("http") if node is not None and node.has("http") else root.at("listen")
    root.ctx.error(at, f"HTTP API on non-loopback address {listen.http[0]} needs api_token "
                       "(drain and reload endpoints would be open to the network)")


def _listen_addr(text: str) -> tuple[str, int]:
    return names.hostport(text, need_ip=True)


def _health(root: Node) -> Health:
    node = root.node("health")
    d = Health()
    if node is None:
        return d
    interval, timeout = node.duration("interval"), node.duration("timeout")
    for key, value in (("interval", interval), ("timeout", timeout)):
        if value == 0:
            node.ctx.error(node.at(key), "must be greater than 0")
    if timeout is not None and timeout >= _or(interval, d.interval) and timeout > 0:
        node.ctx.error(
            node.at("timeout"),
            "must be shorter than health.interval (one probe at a time per target)",
        )
    when = node.text("when_all_unhealthy")
    return Health(
        interval=_or(interval, d.interval),
        timeout=_or(timeout, d.timeout),
        rise=_or(node.integer("rise"), d.rise),
        fall=_or(node.integer("fall"), d.fall),
        min_ready=_or(node.integer("min_ready"), d.min_ready),
        cluster_grace=_or(node.duration("cluster_grace"), d.cluster_grace),
        when_all_unhealthy="nxdomain" if when == "nxdomain" else "serve_all",
    )


def _generated_subtrees(ctx: Ctx) -> list[str]:
    """Suffixes under which fedns generates service names (S.N.F.svc[.AZ][.REGION].Z)."""
    if not ctx.zone or not ctx.federation:
        return []
    base = f".{ctx.federation}.svc."
    out = [base + ctx.zone]
    for region, azs in ctx.region_zones.items():
        out.append(f"{base}{region}.{ctx.zone}")
        out.extend(f"{base}{az}.{region}.{ctx.zone}" for az in azs)
    return out


def _records(root: Node) -> tuple[StaticRecord, ...]:
    ctx, zone = root.ctx, root.ctx.zone
    out: list[StaticRecord] = []
    paths: list[Path] = []
    types_at: dict[str, list[tuple[str, Path]]] = {}
    generated = _generated_subtrees(ctx)
    for node in root.nodes("records"):
        name_text, rtype = node.text("name"), node.text("type")
        raw = node.raw("value")
        plain = isinstance(raw, str | int | float) and not isinstance(raw, bool)
        value = str(raw) if plain else None
        if name_text is None or rtype is None or zone is None:
            continue
        rtype = rtype.upper()
        name = checked(
            node, node.at("name"), name_text, lambda t: names.absolute(t, zone, wildcard=True)
        )
        if name is None:
            continue
        if not names.in_zone(name, zone):
            ctx.error(node.at("name"), f"{name} is outside the zone {zone}")
            continue
        if any(name.endswith(g) for g in generated):
            ctx.error(node.at("name"), f"{name} is inside the names fedns generates for services")
            continue
        if rtype == "NS" and name == zone:
            ctx.error(node.at("type"), "apex NS records come from 'nameservers'")
            continue
        rdata = None
        if value is not None:
            try:
                rdata = canonical(rtype, value, zone)
            except ValueError as exc:
                ctx.error(node.at("value"), str(exc))
        if rdata is None:
            continue
        types_at.setdefault(name, []).append((rtype, node.at("name")))
        out.append(StaticRecord(name, rtype, rdata, node.integer("ttl")))
        paths.append(node.at("name"))
    for name, entries in types_at.items():
        cnames = [p for t, p in entries if t == "CNAME"]
        if cnames and (len(entries) > 1 or name == zone):
            what = "the zone apex" if name == zone else "other records at the same name"
            ctx.error(cnames[-1], f"a CNAME at {name} cannot coexist with {what}")
    if zone is not None:
        _delegations(root, zone, out, paths, generated)
    return tuple(out)


def _delegations(root: Node, zone: str, records: list[StaticRecord], paths: list[Path],
                 generated: list[str]) -> None:
    """NS records below the apex are zone cuts (delegations): the server
    answers the cut and every name below it with a referral, so a record
    there that is not glue (A/AAAA of a nameserver name) would never be
    served. Such records, NS records at a wildcard name, and cuts above the
    names fedns generates (services, Ingress hosts) are errors."""
    ctx = root.ctx
    cuts: dict[str, Path] = {}
    targets: set[str] = set()
    for rec, path in zip(records, paths, strict=True):
        if rec.rtype != "NS":
            continue
        targets.add(rec.value)
        if rec.name.startswith("*."):
            ctx.error(path, f"NS records at the wildcard name {rec.name} cannot delegate "
                            "(a delegation needs a name without '*')")
        else:
            cuts.setdefault(rec.name, path)
    if not cuts:
        return
    ns = root.node("nameservers")
    for key, _, _ in ns.entries() if ns is not None else ():
        try:
            targets.add(names.absolute(key, zone))
        except ValueError:
            continue  # reported by _nameservers
    for rec, path in zip(records, paths, strict=True):
        cut = _cut_above(rec.name, cuts)
        if cut is None:
            continue
        if cut == rec.name:
            if rec.rtype not in ("NS", "DS"):
                ctx.error(path, f"{rec.name} is delegated (NS records at {cut}): only NS and DS "
                                f"records can be there; this {rec.rtype} would never be served")
        elif rec.rtype not in ("A", "AAAA") or rec.name not in targets:
            ctx.error(path, f"{rec.name} is below the delegation at {cut}: only glue (A/AAAA of "
                            f"a nameserver) can be there; this {rec.rtype} would never be served")
    for suffix in generated:
        cut = _cut_above(suffix[1:], cuts)
        if cut is not None:
            ctx.error(cuts[cut], f"the delegation at {cut} would take over the names fedns "
                                 f"generates for services (*{suffix})")
    for cnode in root.nodes("clusters"):
        for inode in cnode.nodes("ingresses"):
            for path, text in inode.texts("hosts"):
                try:
                    host = names.absolute(text, zone, wildcard=True)
                except ValueError:
                    continue  # reported by the ingress builder
                cut = _cut_above(host, cuts)
                if cut is not None:
                    ctx.error(path, f"ingress host {host} is inside the delegation at {cut} "
                                    "(it would never be served)")


def _cut_above(name: str, cuts: dict[str, Path]) -> str | None:
    """The highest of ``cuts`` at or above ``name``, or None."""
    labels = name.split(".")
    for i in range(len(labels) - 2, -1, -1):
        candidate = ".".join(labels[i:])
        if candidate in cuts:
            return candidate
    return None


def _ingress_conflicts(ctx: Ctx, root: Node, records: tuple[StaticRecord, ...]) -> None:
    static = {r.name for r in records}
    for cnode in root.nodes("clusters"):
        for inode in cnode.nodes("ingresses"):
            for path, text in inode.texts("hosts"):
                try:
                    host = names.absolute(text, ctx.zone, wildcard=True) if ctx.zone else None
                except ValueError:
                    continue  # already reported by the ingress builder
                if host in static:
                    ctx.error(path, f"ingress host {host} is also a static record name")


def _geo(root: Node) -> Geo:
    ctx = root.ctx
    node = root.node("geo")
    d = Geo()
    if node is None:
        return d
    nets: list[GeoNetwork] = []
    for gnode in node.nodes("networks"):
        net = checked(gnode, gnode.at("network"), gnode.text("network") or "", names.network)
        region, zone = gnode.text("region"), gnode.text("zone")
        region, zone = region.lower() if region else None, zone.lower() if zone else None
        if region is not None and region not in ctx.region_zones:
            ctx.error(gnode.at("region"), f"unknown region {region!r}")
        elif region is not None and zone is not None and zone not in ctx.region_zones[region]:
            ctx.error(gnode.at("zone"), f"zone {zone!r} is not in region {region!r}")
        if net is not None and region is not None:
            nets.append(GeoNetwork(net, region, zone))
    database = node.text("database")
    return Geo(
        database=ctx.file_path(database) if database else None,
        networks=tuple(nets),
        cluster_local=_or(node.flag("cluster_local"), d.cluster_local),
        ipv4_cache_prefix=_or(node.integer("ipv4_cache_prefix"), d.ipv4_cache_prefix),
        ipv6_cache_prefix=_or(node.integer("ipv6_cache_prefix"), d.ipv6_cache_prefix),
        cache_size=_or(node.integer("cache_size"), d.cache_size),
    )


def _server(root: Node) -> Server:
    node = root.node("server")
    d = Server()
    if node is None:
        return d
    idle = node.duration("tcp_idle_timeout")
    if idle == 0:
        node.ctx.error(node.at("tcp_idle_timeout"), "must be greater than 0")
    return Server(
        edns_udp_size=_or(node.integer("edns_udp_size"), d.edns_udp_size),
        max_answers=_or(node.integer("max_answers"), d.max_answers),
        tcp_idle_timeout=_or(idle, d.tcp_idle_timeout),
        tcp_max_connections=_or(node.integer("tcp_max_connections"), d.tcp_max_connections),
        tcp_max_per_client=_or(node.integer("tcp_max_per_client"), d.tcp_max_per_client),
        identity=node.text("identity"),
        version=node.text("version"),
        notify_allow=networks(node, "notify_allow"),
        transfer_allow=networks(node, "transfer_allow"),
        transfer_tsig=_tsig_key(node),
        also_notify=_also_notify(node),
        rrl_responses_per_second=_or(
            node.integer("rrl_responses_per_second"), d.rrl_responses_per_second
        ),
        rrl_slip=_or(node.integer("rrl_slip"), d.rrl_slip),
        rrl_window=_or(node.duration("rrl_window"), d.rrl_window),
        workers=_or(node.integer("workers"), d.workers),
        cookies=_or(node.flag("cookies"), d.cookies),
        cookie_secret=_cookie_secret(node),
        cookie_secret_previous=_cookie_secret_previous(node),
        require_server_cookie=_or(node.flag("require_server_cookie"), d.require_server_cookie),
    )


def _also_notify(server: Node) -> tuple[tuple[str, int], ...]:
    """``server.also_notify``: the secondaries sent a NOTIFY, each once."""
    out: list[tuple[str, int]] = []
    first: dict[tuple[str, int], Path] = {}
    for path, text in server.texts("also_notify"):
        target = checked(server, path, text, notify_target)
        if target is None:
            continue
        if target in first:
            line = server.ctx.tree.pos(first[target]).line
            server.ctx.error(path, f"{text!r} is listed twice (first at line {line})")
            continue
        first[target] = path
        out.append(target)
    return tuple(out)


def notify_target(text: str) -> tuple[str, int]:
    """A NOTIFY target: an IP address with an optional port (default 53):
    ``192.0.2.1``, ``192.0.2.1:5353``, ``2001:db8::1``, ``[2001:db8::1]:5353``."""
    stripped = text.strip()
    bare = stripped[1:-1] if stripped.startswith("[") and stripped.endswith("]") else stripped
    try:  # an address alone (an IPv6 one has colons, and brackets are optional)
        return ipaddress.ip_address(bare).compressed, 53
    except ValueError:
        pass
    if stripped.count(":") != 1 and not stripped.startswith("["):
        raise ValueError(f"{text!r} is not an IP address (IPv6 with a port in brackets, "
                         "e.g. [2001:db8::1]:53)")
    digits = stripped.rpartition(":")[2]
    if digits.isdigit() and not 1 <= int(digits) <= 65535:
        raise ValueError(f"{text!r}: port {int(digits)} is out of range 1-65535 (default 53)")
    return names.hostport(stripped, need_ip=True)


def _from_env(node: Node, key: str, text: str, *, at: Path | None = None,
              optional: bool = False) -> str | None:
    """``text``, the value of ``key``; when it is ``${VAR}``, the variable's
    value instead, so secrets stay out of the file. None, reported at the
    key's line (or at ``at``, e.g. a list item), when the variable is not set
    or empty; None unreported when ``optional``: a value a deployment may
    leave unset."""
    m = _ENV.match(text.strip())
    if m is None:
        return text
    value = os.environ.get(m[1], "")
    if not value:
        if not optional:
            node.ctx.error(node.at(key) if at is None else at,
                           f"environment variable {m[1]} is not set or empty")
        return None
    return value


def _tsig_key(server: Node) -> TsigKey | None:
    node = server.node("transfer_tsig")
    if node is None:
        return None
    name = checked(node, node.at("name"), node.text("name") or "", names.absolute)
    secret = _from_env(node, "secret", node.text("secret") or "")
    if secret is None:
        return None
    try:
        ok = bool(base64.b64decode(secret.strip(), validate=True))
    except ValueError:
        ok = False
    if not ok:
        node.ctx.error(node.at("secret"), "must be a non-empty base64 string (the key is hidden)")
        return None
    return TsigKey(name, secret.strip()) if name else None


def _cookie_secret(server: Node) -> bytes | None:
    """``server.cookie_secret``: 32 hex digits (16 bytes), or ``${ENV_VAR}``
    naming a variable that holds them. Errors never show the value."""
    text = server.text("cookie_secret")
    if text is None:
        return None
    text = _from_env(server, "cookie_secret", text)
    if text is None:
        return None
    return _secret16(server, server.at("cookie_secret"), text)


def _cookie_secret_previous(server: Node) -> tuple[bytes, ...]:
    """``server.cookie_secret_previous``: one secret or a list, each written
    as ``cookie_secret`` is, whose cookies still validate after a rotation.
    Empty, or an unset or empty ``${ENV_VAR}``, means none: the Deployment
    passes it from an optional Secret key that is absent between rotations.
    Only with ``cookie_secret`` (nothing to rotate from otherwise)."""
    key = "cookie_secret_previous"
    if not server.has(key):
        return ()
    if not server.has("cookie_secret"):
        server.ctx.error(server.at(key),
                         "needs server.cookie_secret (the secret cookies are issued with)")
        return ()
    items = list(server.texts(key))
    text = server.text(key)
    if text is not None:
        items = [(server.at(key), text)]
    out: list[bytes] = []
    for path, item in items:
        value = _from_env(server, key, item, at=path, optional=True)
        secret = _secret16(server, path, value) if value and value.strip() else None
        if secret is not None and secret not in out:
            out.append(secret)
    return tuple(out)


def _secret16(node: Node, path: Path, text: str) -> bytes | None:
    """The 16 bytes of a cookie secret written as 32 hex digits; else None,
    reported at ``path`` without the value."""
    try:
        secret = bytes.fromhex(text.strip())
    except ValueError:
        secret = b""
    if len(secret) != 16:
        node.ctx.error(path, "must be 32 hex digits (16 bytes; the value is hidden)")
        return None
    return secret


def _admin_email(root: Node) -> str:
    ctx, zone = root.ctx, root.ctx.zone
    text = root.text("admin_email")
    if text is None:
        return f"hostmaster.{zone}" if zone else "hostmaster"
    local, at, domain = text.strip().rpartition("@")
    if not at:
        return checked(root, root.at("admin_email"), text, lambda t: names.absolute(t, zone)) or ""
    if not _MAILBOX.match(local):
        ctx.error(root.at("admin_email"), f"{text!r} is not a usable mailbox")
        return ""
    domain_abs = checked(root, root.at("admin_email"), domain, names.absolute)
    return local.lower().replace(".", "\\.") + "." + (domain_abs or "")


def _api_token(root: Node) -> str | None:
    text = root.text("api_token")
    if text is None:
        return None
    if not text.strip():
        root.ctx.error(root.at("api_token"), "must not be empty")
        return text
    return _from_env(root, "api_token", text)
