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
"""

from __future__ import annotations

from typing import Literal

from config.build_clusters import checked, url
from config.model import Provider
from config.node import Node

DEFAULT_TIMEOUT = 10.0
_COMMON = ("type", "name", "debounce", "max_change_fraction", "owner_id", "delegate")


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
        elif key == "latency_regions":
            value = _latency_regions(node)
        if value is not None:
            out.append((key, value))
    given = {k for k, _ in out}
    if "timeout" not in given:
        out.append(("timeout", DEFAULT_TIMEOUT))
    if kind == "coredns-etcd" and "prefix" not in given:
        out.append(("prefix", "/skydns"))
    return out


def _latency_regions(node: Node) -> tuple[tuple[str, str], ...] | None:
    """``latency_regions`` as sorted (fedns region, AWS region) pairs, checked:
    known regions, each region and each AWS region once."""
    ctx = node.ctx
    block = node.node("latency_regions")
    if block is None:
        return None
    out: dict[str, str] = {}
    by_aws: dict[str, str] = {}
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
        if value in by_aws:
            ctx.error(path, f"AWS region {value!r} is already mapped from region "
                            f"{by_aws[value]!r} (Route53 takes one latency record set "
                            "per AWS region)")
            continue
        out[region] = value
        by_aws[value] = region
    return tuple(sorted(out.items()))


def _routing(node: Node, delegate: bool) -> None:
    """``routing`` and ``latency_regions`` go together (Route53 only: the schema)."""
    routing = node.text("routing")
    if routing == "latency":
        if delegate:
            node.ctx.error(node.at("routing"), "'latency' does not apply to a "
                           "delegating provider (it publishes only the NS delegation)")
        elif not node.has("latency_regions"):
            node.ctx.error(node.at("routing"), "'latency' needs latency_regions "
                           "(fedns region -> AWS region)")
    elif node.has("latency_regions"):
        node.ctx.error(node.at("latency_regions"), "latency_regions needs routing: latency "
                       f"(routing is {routing or 'all'!r})", at_key=True)


def provider(node: Node, have_nameservers: bool) -> Provider | None:
    kind = node.text("type")
    if kind not in ("coredns-etcd", "route53", "clouddns"):
        return None
    typ: Literal["coredns-etcd", "route53", "clouddns"] = kind  # type: ignore[assignment]
    delegate = bool(node.flag("delegate"))
    if delegate and not have_nameservers:
        node.ctx.error(node.at("delegate"), "delegation needs 'nameservers' to publish")
    if typ == "route53":
        _routing(node, delegate)
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
