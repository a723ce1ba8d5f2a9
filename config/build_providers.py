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
        if value is not None:
            out.append((key, value))
    given = {k for k, _ in out}
    if "timeout" not in given:
        out.append(("timeout", DEFAULT_TIMEOUT))
    if kind == "coredns-etcd" and "prefix" not in given:
        out.append(("prefix", "/skydns"))
    return out


def provider(node: Node, have_nameservers: bool) -> Provider | None:
    kind = node.text("type")
    if kind not in ("coredns-etcd", "route53", "clouddns"):
        return None
    typ: Literal["coredns-etcd", "route53", "clouddns"] = kind  # type: ignore[assignment]
    delegate = bool(node.flag("delegate"))
    if delegate and not have_nameservers:
        node.ctx.error(node.at("delegate"), "delegation needs 'nameservers' to publish")
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
