"""What one member cluster runs, kept incrementally on the event loop.

Watchers feed digested facts in; ``refresh`` re-translates only the shards
whose inputs changed and says whether the set of shards changed. Objects that
feed other objects' shards are indexed both ways, so that a change reaches
every shard it affects: a Service's endpoints feed its own shard and those of
the Ingresses and HTTPRoutes forwarding to it; a Gateway's addresses and
listeners feed every HTTPRoute attached to it.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import replace

from config.model import Cluster, Config
from healthwatch.kube.facts import (
    ExportFacts,
    Facts,
    GatewayFacts,
    IngressFacts,
    Key,
    NodeFacts,
    RouteFacts,
    ServiceFacts,
    SliceFacts,
)
from healthwatch.kube.hosts import Refused
from healthwatch.kube.translate import (
    Attachment,
    Placement,
    ShardContext,
    attachment,
    httproute_shard,
    ingress_hosts,
    ingress_shard,
    placement,
    route_hosts,
    service_shard,
    unserved_hosts,
    wanted_hosts,
)
from healthwatch.model import ShardSpec

ShardKey = tuple[str, str, str]  # (kind, namespace, name)


class _Index:
    """Which objects depend on a key (a Service, a Gateway): many to many."""

    def __init__(self) -> None:
        self._members: dict[Key, set[Key]] = defaultdict(set)

    def link(self, targets: Iterable[Key], member: Key) -> None:
        for target in targets:
            self._members[target].add(member)

    def unlink(self, targets: Iterable[Key], member: Key) -> None:
        for target in targets:
            members = self._members.get(target)
            if members is not None:
                members.discard(member)
                if not members:
                    del self._members[target]

    def members(self, target: Key) -> set[Key]:
        return self._members.get(target, set())


class ClusterState:
    def __init__(self, cluster: Cluster, config: Config, log: logging.Logger) -> None:
        self._cluster = cluster
        self._config = config
        self._log = log
        self.services: dict[Key, ServiceFacts] = {}
        self.slices: dict[Key, SliceFacts] = {}
        self.ingresses: dict[Key, IngressFacts] = {}
        self.exports: set[Key] = set()
        self.nodes: dict[str, NodeFacts] = {}
        self.gateways: dict[Key, GatewayFacts] = {}
        self.routes: dict[Key, RouteFacts] = {}  # HTTPRoutes
        self._slices_of: dict[Key, set[Key]] = defaultdict(set)  # service -> slices
        self._ingresses_of = _Index()  # backend service -> ingresses
        self._routes_of_service = _Index()  # backend service -> routes
        self._routes_of_gateway = _Index()  # parent Gateway -> routes
        # the candidate hosts of each marked route, and those no listener
        # accepts, when its refused ones were logged
        self._route_hosts_logged: dict[Key, tuple[tuple[str, ...], tuple[str, ...]]] = {}
        self._dirty_services: set[Key] = set()
        self._dirty_ingresses: set[Key] = set()
        self._dirty_routes: set[Key] = set()
        self._shards: dict[ShardKey, ShardSpec] = {}
        self._sorted: tuple[ShardSpec, ...] = ()
        self.context = ShardContext(
            cluster=cluster.name,
            zone_apex=config.zone.lower(),
            federation=config.federation.lower(),
            mode=cluster.federation.mode,
            default_probe=cluster.default_probe,
            default_probe_path=cluster.default_probe_path,
            placement=placement(cluster, config, ()),
        )

    @property
    def shards(self) -> tuple[ShardSpec, ...]:
        return self._sorted

    # -- input -----------------------------------------------------------------

    def replace_all(self, resource: str, items: Iterable[Facts]) -> None:
        """A full list: upsert every item and delete what is no longer there."""
        fresh = {(f.namespace, f.name): f for f in items}
        for key in self._keys(resource) - fresh.keys():
            self.delete(resource, key)
        for facts in fresh.values():
            self.upsert(facts)

    def _keys(self, resource: str) -> set[Key]:
        if resource == "services":
            return set(self.services)
        if resource == "endpointslices":
            return set(self.slices)
        if resource == "ingresses":
            return set(self.ingresses)
        if resource == "serviceexports":
            return set(self.exports)
        if resource == "gateways":
            return set(self.gateways)
        if resource == "httproutes":
            return set(self.routes)
        if resource == "nodes":
            return {("", name) for name in self.nodes}
        return set()

    def upsert(self, facts: Facts) -> None:
        key = (facts.namespace, facts.name)
        if isinstance(facts, ServiceFacts):
            if self.services.get(key) != facts:
                self.services[key] = facts
                self._service_changed(key)
        elif isinstance(facts, SliceFacts):
            old = self.slices.get(key)
            if old != facts:
                if old is not None:
                    self._unlink_slice(key, old)
                self.slices[key] = facts
                if facts.service is not None:
                    self._slices_of[(facts.namespace, facts.service)].add(key)
                    self._service_changed((facts.namespace, facts.service))
        elif isinstance(facts, IngressFacts):
            old_ing = self.ingresses.get(key)
            if old_ing != facts:
                if old_ing is not None:
                    self._unlink_ingress(key, old_ing)
                self.ingresses[key] = facts
                if old_ing is None or (old_ing.hosts, old_ing.marked) != (facts.hosts,
                                                                          facts.marked):
                    self._log_refused_hosts(facts)
                self._ingresses_of.link(_backends(facts), key)
                self._dirty_ingresses.add(key)
        elif isinstance(facts, RouteFacts):
            self._upsert_route(key, facts)
        elif isinstance(facts, GatewayFacts):
            if self.gateways.get(key) != facts:
                self.gateways[key] = facts
                self._dirty_routes.update(self._routes_of_gateway.members(key))
        elif isinstance(facts, ExportFacts):
            if key not in self.exports:
                self.exports.add(key)
                self._dirty_services.add(key)
        elif isinstance(facts, NodeFacts) and self.nodes.get(facts.name) != facts:
            self.nodes[facts.name] = facts
            self._nodes_changed()

    def delete(self, resource: str, key: Key) -> None:
        if resource == "services" and self.services.pop(key, None) is not None:
            self._service_changed(key)
        elif resource == "endpointslices" and (old := self.slices.pop(key, None)) is not None:
            self._unlink_slice(key, old)
        elif resource == "ingresses" and (old_ing := self.ingresses.pop(key, None)) is not None:
            self._unlink_ingress(key, old_ing)
            self._dirty_ingresses.add(key)
        elif resource == "serviceexports" and key in self.exports:
            self.exports.discard(key)
            self._dirty_services.add(key)
        elif resource == "httproutes" and (old_route := self.routes.pop(key, None)) is not None:
            self._unlink_route(key, old_route)
            self._route_hosts_logged.pop(key, None)
            self._dirty_routes.add(key)
        elif resource == "gateways" and self.gateways.pop(key, None) is not None:
            self._dirty_routes.update(self._routes_of_gateway.members(key))
        elif resource == "nodes" and self.nodes.pop(key[1], None) is not None:
            self._nodes_changed()

    def _upsert_route(self, key: Key, facts: RouteFacts) -> None:
        old = self.routes.get(key)
        if old == facts:
            return
        if old is not None:
            self._unlink_route(key, old)
        self.routes[key] = facts
        self._routes_of_gateway.link((p.gateway for p in facts.parents), key)
        self._routes_of_service.link(facts.backends, key)
        self._dirty_routes.add(key)

    def _unlink_route(self, key: Key, old: RouteFacts) -> None:
        self._routes_of_gateway.unlink((p.gateway for p in old.parents), key)
        self._routes_of_service.unlink(old.backends, key)

    def _log_refused_hosts(self, ing: IngressFacts) -> None:
        """One line per refused rule host, when the Ingress's hosts change
        (not on every re-translation for a backend's ready count)."""
        if ing.marked:
            self._log_refused("ingress", ing.namespace, ing.name,
                              ingress_hosts(ing, self.context)[1])

    def _log_refused_route_hosts(self, key: Key, route: RouteFacts, att: Attachment) -> None:
        """As ``_log_refused_hosts``, for a route: its hosts depend on its
        Gateways' listeners (taken from them, or narrowed to them), so they are
        compared when it is re-translated."""
        if not route.marked:
            self._route_hosts_logged.pop(key, None)
            return
        wanted = (wanted_hosts(route, att), unserved_hosts(route, att))
        if self._route_hosts_logged.get(key) != wanted:
            self._route_hosts_logged[key] = wanted
            self._log_refused("httproute", route.namespace, route.name,
                              route_hosts(route, att, self.context)[1])

    def _log_refused(self, kind: str, namespace: str, name: str,
                     refused: Iterable[Refused]) -> None:
        for r in refused:
            self._log.warning("ingress_host_ignored object=%s/%s/%s host=%r reason=%s%s",
                              kind, namespace, name, r.host, r.reason,
                              f" error={r.detail!r}" if r.detail else "")

    def _unlink_slice(self, key: Key, old: SliceFacts) -> None:
        if old.service is None:
            return
        service = (old.namespace, old.service)
        members = self._slices_of.get(service)
        if members is not None:
            members.discard(key)
            if not members:
                del self._slices_of[service]
        self._service_changed(service)

    def _unlink_ingress(self, key: Key, old: IngressFacts) -> None:
        self._ingresses_of.unlink(_backends(old), key)

    def _service_changed(self, key: Key) -> None:
        self._dirty_services.add(key)
        self._dirty_ingresses.update(self._ingresses_of.members(key))
        self._dirty_routes.update(self._routes_of_service.members(key))

    def _nodes_changed(self) -> None:
        found = placement(self._cluster, self._config, self.nodes.values())
        # No Node carrying a label any more (a label removed, nodes replaced or
        # scaled to zero) says nothing about where the cluster is: keep what
        # was seen rather than drop its shards out of their AZ and region.
        old = self.context.placement
        where = Placement(region=found.region or old.region, zone=found.zone or old.zone)
        if where != found:
            self._log.warning("placement_kept region=%s zone=%s reason=no_node_labels",
                              where.region, where.zone)
        if where != self.context.placement:
            self._log.info("placement region=%s zone=%s", where.region, where.zone)
            self.context = replace(self.context, placement=where)
            self._dirty_services.update(self.services)
            self._dirty_ingresses.update(self.ingresses)
            self._dirty_routes.update(self.routes)

    # -- output ----------------------------------------------------------------

    def ready(self, service: Key) -> int:
        return sum(self.slices[k].ready for k in self._slices_of.get(service, ()))

    def refresh(self) -> bool:
        """Re-translate dirty objects; True when any shard changed."""
        changed = False
        for key in self._dirty_services:
            svc = self.services.get(key)
            shard = None
            if svc is not None:
                shard = service_shard(
                    svc,
                    self.context,
                    ready=self.ready(key),
                    exported=key in self.exports,
                    log=self._log,
                )
            changed |= self._put(("service", *key), shard)
        for key in self._dirty_ingresses:
            ing = self.ingresses.get(key)
            shard = None
            if ing is not None:
                ready = (
                    sum(self.ready((ing.namespace, b)) for b in ing.backends)
                    if ing.backends
                    else None
                )
                shard = ingress_shard(ing, self.context, ready=ready, log=self._log)
            changed |= self._put(("ingress", *key), shard)
        for key in self._dirty_routes:
            changed |= self._put(("httproute", *key), self._route_shard(key))
        self._dirty_services.clear()
        self._dirty_ingresses.clear()
        self._dirty_routes.clear()
        if changed:
            self._sorted = tuple(self._shards[k] for k in sorted(self._shards))
        return changed

    def _route_shard(self, key: Key) -> ShardSpec | None:
        route = self.routes.get(key)
        if route is None:
            return None
        att = attachment(route, self.gateways)
        self._log_refused_route_hosts(key, route, att)
        return httproute_shard(route, att, self.context, ready=self._route_ready(route),
                               log=self._log)

    def _route_ready(self, route: RouteFacts) -> int | None:
        """The ready endpoints of the Services ``route`` sends traffic to; 0
        when every backendRef weighs 0 (no traffic goes anywhere: not ready);
        None when it names no backend that could count (it counts as one)."""
        if route.backends:
            return sum(map(self.ready, route.backends))
        return 0 if route.all_weights_zero else None

    def _put(self, key: ShardKey, shard: ShardSpec | None) -> bool:
        old = self._shards.get(key)
        if shard == old:
            return False
        if shard is None:
            del self._shards[key]
        else:
            self._shards[key] = shard
        return True


def _backends(ing: IngressFacts) -> list[Key]:
    return [(ing.namespace, b) for b in ing.backends]
