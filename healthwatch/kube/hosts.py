"""Which rule hosts of a federated Ingress (or hostnames of a federated
HTTPRoute: the same rules) become geo-aware names (pure).

A host becomes a name when it lies inside the zone and is a valid domain
name whose only wildcard is an exact ``*`` first label (Kubernetes allows
``*.foo.com``; RFC 4592 serves it for every missing name below ``foo.com``).
Hosts outside the zone are skipped silently (an Ingress often serves other
domains too). The others are refused with a reason:

- ``invalid_name``: not a domain name, or a ``*`` that is not the whole first
  label (``*foo.shop.Z``, ``a.*.shop.Z``, ``*``);
- ``wildcard_at_apex``: ``*.Z`` would answer every missing name of the zone
  (typos of region, AZ and ``svc`` labels included) with this one Ingress;
- ``inside_generated_names``: the host lies inside the names fedns generates
  for services (``*.F.svc.Z``, ``*.F.svc.REGION.Z``, ``*.F.svc.AZ.REGION.Z``,
  the subtrees where config refuses static records). It would add answers to
  a Service's region or AZ name, or (a wildcard) answer the names of Services
  that do not exist. The one exception is a concrete host that is exactly a
  global name ``S.N.F.svc.Z``: it merges with that Service (SPEC §2);
- ``no_matching_listener`` (HTTPRoutes only): a hostname that none of the
  route's Gateway listeners accepts, so that Gateway does not serve it and
  its addresses must not answer for it (``not_served``).
"""

from __future__ import annotations

from dataclasses import dataclass

from config import names

INVALID_NAME = "invalid_name"
NO_LISTENER = "no_matching_listener"


@dataclass(frozen=True, slots=True)
class HostRules:
    apex: str  # the config zone, absolute, lower-case
    federation: str  # lower-case


@dataclass(frozen=True, slots=True)
class Refused:
    host: str
    reason: str
    detail: str = ""


def _check(host: str, rules: HostRules) -> tuple[str | None, Refused | None]:
    try:
        name = names.absolute(host, wildcard=True)
    except ValueError as e:
        return None, Refused(host, INVALID_NAME, str(e))
    if not names.in_zone(name, rules.apex):
        return None, None
    why = names.ingress_host_refusal(name, rules.apex, rules.federation)
    if why is not None:
        return None, Refused(name, why[0])
    return name, None


def classify(hosts: tuple[str, ...], rules: HostRules) -> tuple[tuple[str, ...],
                                                               tuple[Refused, ...]]:
    """The hosts that become names (in order, without repeats), and the refused ones."""
    kept: list[str] = []
    refused: list[Refused] = []
    for host in hosts:
        name, why = _check(host, rules)
        if why is not None:
            refused.append(why)
        elif name is not None and name not in kept:
            kept.append(name)
    return tuple(kept), tuple(refused)


def not_served(hosts: tuple[str, ...], rules: HostRules) -> tuple[Refused, ...]:
    """The refusals of ``hosts`` that were asked for but that nothing serves
    (route hostnames no listener accepts): ``no_matching_listener`` for those
    that would otherwise become names, their own reason for those refused
    anyway, and nothing for those outside the zone (skipped silently, as
    always)."""
    kept, refused = classify(hosts, rules)
    return refused + tuple(Refused(host, NO_LISTENER) for host in kept)


def probe_host(hosts: tuple[str, ...]) -> str:
    """The ``Host:`` an HTTP probe of the Ingress (or HTTPRoute) sends: the
    first concrete host, else a name the first wildcard covers
    (``fedns-probe.shop.Z`` for ``*.shop.Z``), so the Ingress or Gateway routes
    the probe like a client's request.
    ``hosts`` is not empty."""
    for host in hosts:
        if not host.startswith("*."):
            return host.rstrip(".")
    return "fedns-probe" + hosts[0][1:].rstrip(".")
