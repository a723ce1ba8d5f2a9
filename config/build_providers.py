"""Provider blocks -> model.Provider; type-specific keys go into ``settings``.

Settings per type (read with ``Provider.get(key)``):
- coredns-etcd: endpoints (tuple of URLs), prefix (default "/skydns", no
  trailing slash), timeout (seconds, default 10.0), lease_ttl (int or absent)
- route53: hosted_zone_id (bare id, "/hostedzone/" stripped), endpoint_url,
  region (both absent when not given), timeout (default 10.0),
  requests_per_second (absent: the backend's 5)
- clouddns: project, managed_zone, endpoint_url (absent when not given),
  timeout (default 10.0)
- route53 and clouddns: attempts, backoff (seconds), marker_ttl (absent: the
  backend's 5, 0.5 and 300)
- route53: routing ("all" or "latency"; absent: all), latency_regions (tuple of
  (fedns region, AWS region) pairs sorted by region; only with routing: latency,
  every fedns region configured, every AWS region used once)
- clouddns: routing ("all" or "geo"; absent: all), geo_regions (tuple of
  (fedns region, Google Cloud region) pairs sorted by region; only with
  routing: geo, every fedns region configured, every Google Cloud region used
  once)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from config.build_clusters import checked, url
from config.model import Provider
from config.node import Node

DEFAULT_TIMEOUT = 10.0
_COMMON = ("type", "name", "debounce", "max_change_fraction", "owner_id", "delegate")


@dataclass(frozen=True, slots=True)
class _Routed:
    """A provider type's native routing of geo-aware names (the schema limits
    ``routing`` and the map key to their type)."""

    mode: str  # the ``routing`` value
    key: str  # the map: fedns region -> the service's region
    theirs: str  # the service's region, in messages
    per: str  # what the service takes once per region, in messages


_ROUTED = {
    "route53": _Routed("latency", "latency_regions", "AWS region",
                       "Route53 takes one latency record set per AWS region"),
    "clouddns": _Routed("geo", "geo_regions", "Google Cloud region",
                        "Cloud DNS takes one geo policy item per location"),
}
_MAP_KEYS = {r.key: r for r in _ROUTED.values()}


def _settings(node: Node, kind: str) -> list[tuple[str, object]]:
    out: list[tuple[str, object]] = []
    for key, value, path in node.entries():
        if key in _COMMON or value is None:
            continue
        if key == "endpoints":
            urls = [checked(node, p, t, url) for p, t in node.texts(key)]
            value = tuple(u for u in urls if u is not None)
        elif key == "endpoint_url" and isinstance(value, str):
            value = checked(node, path, value, url)
        elif key in ("timeout", "backoff"):
            value = node.duration(key)
            if value == 0:
                node.ctx.error(path, "must be greater than 0")
        elif key == "prefix" and isinstance(value, str):
            value = value.rstrip("/") or "/"
        elif key == "hosted_zone_id" and isinstance(value, str):
            value = value.removeprefix("/hostedzone/")
        elif key in _MAP_KEYS and _ROUTED.get(kind) == _MAP_KEYS[key]:
            value = _region_map(node, _MAP_KEYS[key])
        if value is not None:
            out.append((key, value))
    given = {k for k, _ in out}
    if "timeout" not in given:
        out.append(("timeout", DEFAULT_TIMEOUT))
    if kind == "coredns-etcd" and "prefix" not in given:
        out.append(("prefix", "/skydns"))
    return out


def _region_map(node: Node, routed: _Routed) -> tuple[tuple[str, str], ...] | None:
    """The routing map (``latency_regions``, ``geo_regions``) as sorted (fedns
    region, service region) pairs, checked: known regions, each region and each
    service region once."""
    ctx = node.ctx
    block = node.node(routed.key)
    if block is None:
        return None
    out: dict[str, str] = {}
    by_theirs: dict[str, str] = {}
    for key, value, path in block.entries():
        if not isinstance(value, str):
            continue
        region = key.lower()
        if region not in ctx.region_zones:
            known = ", ".join(ctx.region_zones) or "none defined"
            ctx.error(path, f"unknown region {region!r} (regions: {known})", at_key=True)
            continue
        if region in out:
            ctx.error(path, f"region {region!r} is mapped twice", at_key=True)
            continue
        if value in by_theirs:
            ctx.error(path, f"{routed.theirs} {value!r} is already mapped from region "
                            f"{by_theirs[value]!r} ({routed.per})")
            continue
        out[region] = value
        by_theirs[value] = region
    return tuple(sorted(out.items()))


def _routing(node: Node, routed: _Routed, delegate: bool) -> None:
    """``routing: <mode>`` and its map go together (per type: the schema)."""
    routing = node.text("routing")
    if routing == routed.mode:
        if delegate:
            node.ctx.error(node.at("routing"), f"{routed.mode!r} does not apply to a "
                           "delegating provider (it publishes only the NS delegation)")
        elif not node.has(routed.key):
            node.ctx.error(node.at("routing"), f"{routed.mode!r} needs {routed.key} "
                           f"(fedns region -> {routed.theirs})")
    elif node.has(routed.key):
        node.ctx.error(node.at(routed.key), f"{routed.key} needs routing: {routed.mode} "
                       f"(routing is {routing or 'all'!r})", at_key=True)


def provider(node: Node, have_nameservers: bool) -> Provider | None:
    kind = node.text("type")
    if kind not in ("coredns-etcd", "route53", "clouddns"):
        return None
    typ: Literal["coredns-etcd", "route53", "clouddns"] = kind  # type: ignore[assignment]
    delegate = bool(node.flag("delegate"))
    if delegate and not have_nameservers:
        node.ctx.error(node.at("delegate"), "delegation needs 'nameservers' to publish")
    if typ in _ROUTED:
        _routing(node, _ROUTED[typ], delegate)
    dflt = Provider(typ, typ)
    debounce = node.duration("debounce")
    fraction = node.number("max_change_fraction")
    return Provider(
        type=typ,
        name=node.text("name") or kind,
        settings=tuple(_settings(node, kind)),
        debounce=dflt.debounce if debounce is None else debounce,
        max_change_fraction=dflt.max_change_fraction if fraction is None else fraction,
        owner_id=node.text("owner_id") or dflt.owner_id,
        delegate=delegate,
    )
