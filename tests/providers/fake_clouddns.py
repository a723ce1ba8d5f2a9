"""A small fake of the Cloud DNS v1 REST API for tests (http.server in a thread).

managedZones get; rrsets list with pageToken; changes create (atomic: a
deletion must match an existing set exactly → 412, an addition must not
exist → 409) and get.  Record sets with a ``routingPolicy`` are stored and
listed as the API does (with its output-only ``kind``s); a geo policy is
validated as Cloud DNS does (400): ``rrdatas`` or a ``routingPolicy``, not
both; one policy kind; at least one item; each item a Google Cloud region
``location``, used once, with ``rrdatas``.  ``fail_next`` injects status
codes, or (status, raw body) pairs for malformed answers; ``before_change``
runs before the next change is applied (to make a delete stale).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Key = tuple[str, str]
POLICY_KINDS = ("geo", "wrr", "primaryBackup")
_LOCATION = re.compile(r"[a-z]+-[a-z]+[0-9]{1,2}")


class FakeCloudDns:
    def __init__(self, project: str, zone: str, dns_name: str, page_size: int = 7) -> None:
        self.project, self.zone, self.dns_name = project, zone, dns_name
        self.page_size = page_size
        self.rrsets: dict[Key, dict[str, Any]] = {}
        self.changes: list[dict[str, Any]] = []
        self.fail_next: list[int | tuple[int, str]] = []
        self.before_change: Callable[[], None] | None = None
        self.lock = threading.Lock()
        self.list_calls = 0
        self.add({"name": dns_name, "type": "SOA", "ttl": 21600,
                  "rrdatas": ["ns-cloud-a1.googledomains.com. hostmaster 1 21600 3600 259200 300"]})
        self.add({"name": dns_name, "type": "NS", "ttl": 21600,
                  "rrdatas": ["ns-cloud-a1.googledomains.com."]})
        server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server = server
        self.url = f"http://127.0.0.1:{server.server_address[1]}"
        self.thread = threading.Thread(target=server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def add(self, rs: dict[str, Any]) -> None:
        self.rrsets[(rs["name"], rs["type"])] = _stored(rs)

    def _apply(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        with self.lock:
            if self.before_change is not None:
                hook, self.before_change = self.before_change, None
                hook()
            new = dict(self.rrsets)
            for d in body.get("deletions", []):
                key = (d["name"], d["type"])
                have = new.get(key)
                if have is None or int(have.get("ttl", 0)) != int(d["ttl"]) or \
                        _data(have) != _data(d):
                    return 412, _err(412, "conditionNotMet", f"stale deletion {key}")
                del new[key]
            for a in body.get("additions", []):
                key = (a["name"], a["type"])
                if key in new:
                    return 409, _err(409, "alreadyExists", f"{key} exists")
                invalid = _invalid(a)
                if invalid:
                    return 400, _err(400, "invalid", f"{invalid} in {key}")
                new[key] = _stored({**a, "ttl": int(a["ttl"])})
            self.rrsets = new
            change = {"kind": "dns#change", "id": str(len(self.changes) + 1), "status": "done",
                      **body}
            self.changes.append(change)
            return 200, change

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self
        base = f"/dns/v1/projects/{fake.project}/managedZones/{fake.zone}"

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, code: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _injected(self) -> bool:
                if fake.fail_next:
                    item = fake.fail_next.pop(0)
                    if isinstance(item, tuple):  # a raw (possibly malformed) answer
                        data = item[1].encode()
                        self.send_response(item[0])
                        self.send_header("Content-Type", "application/json")
                        self.send_header("Content-Length", str(len(data)))
                        self.end_headers()
                        self.wfile.write(data)
                    else:
                        self._send(item, _err(item, "injected", "injected failure"))
                    return True
                return False

            def do_GET(self) -> None:
                path, _, query = self.path.partition("?")
                params = dict(p.split("=", 1) for p in query.split("&") if "=" in p)
                if self._injected():
                    return
                if path == base:
                    self._send(200, {"kind": "dns#managedZone", "name": fake.zone,
                                     "dnsName": fake.dns_name})
                elif path == base + "/rrsets":
                    fake.list_calls += 1
                    with fake.lock:
                        items = [fake.rrsets[k] for k in sorted(fake.rrsets)]
                    start = int(params.get("pageToken", "0"))
                    page = items[start:start + fake.page_size]
                    body: dict[str, Any] = {"kind": "dns#resourceRecordSetsListResponse",
                                            "rrsets": page}
                    if start + fake.page_size < len(items):
                        body["nextPageToken"] = str(start + fake.page_size)
                    self._send(200, body)
                elif path.startswith(base + "/changes/"):
                    cid = path.rsplit("/", 1)[-1]
                    found = [c for c in fake.changes if c["id"] == cid]
                    self._send(200 if found else 404, found[0] if found else _err(404, "nf", cid))
                else:
                    self._send(404, _err(404, "notFound", path))

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                if self._injected():
                    return
                if self.path.partition("?")[0] != base + "/changes":
                    self._send(404, _err(404, "notFound", self.path))
                    return
                code, out = fake._apply(body)
                self._send(code, out)

        return Handler


def _stored(rs: dict[str, Any]) -> dict[str, Any]:
    """``rs`` as the API lists it: ``kind`` on the set, its policy and items."""
    out = {"kind": "dns#resourceRecordSet", **json.loads(json.dumps(rs))}
    policy = out.get("routingPolicy")
    if isinstance(policy, dict):
        policy.setdefault("kind", "dns#rRSetRoutingPolicy")
        geo = policy.get("geo")
        if isinstance(geo, dict):
            geo.setdefault("kind", "dns#rRSetRoutingPolicyGeoPolicy")
            for item in geo.get("items", []):
                item.setdefault("kind", "dns#rRSetRoutingPolicyGeoPolicyGeoPolicyItem")
    return out


def _strip_kinds(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_kinds(v) for k, v in value.items() if k != "kind"}
    if isinstance(value, list):
        return [_strip_kinds(v) for v in value]
    return value


def _data(rs: dict[str, Any]) -> tuple[Any, ...]:
    """What a deletion must repeat: the values, or the routing policy (items
    and values in any order, ``kind``s aside)."""
    policy = _strip_kinds(rs.get("routingPolicy"))
    if isinstance(policy, dict) and isinstance(policy.get("geo"), dict):
        geo = dict(policy["geo"])
        geo["items"] = sorted(json.dumps({**it, "rrdatas": sorted(it.get("rrdatas", []))},
                                         sort_keys=True) for it in geo.get("items", []))
        policy = {**policy, "geo": geo}
    return (sorted(rs.get("rrdatas", [])), json.dumps(policy, sort_keys=True))


def _invalid(rs: dict[str, Any]) -> str | None:
    """Why Cloud DNS refuses the addition ``rs`` (400), or None."""
    policy = rs.get("routingPolicy")
    if policy is None:
        if not rs.get("rrdatas"):
            return "neither rrdatas nor a routingPolicy"
        return _bad_rdata(rs["type"], rs["rrdatas"])
    if "rrdatas" in rs:
        return "rrdatas and a routingPolicy"
    if not isinstance(policy, dict) or len([k for k in POLICY_KINDS if k in policy]) != 1:
        return "not exactly one routing policy"
    geo = policy.get("geo")
    if geo is None:
        return None
    items = geo.get("items") if isinstance(geo, dict) else None
    if not isinstance(items, list) or not items:
        return "a geo policy without items"
    locations = [it.get("location") for it in items]
    if len(set(locations)) != len(locations):
        return "multiple items with the same location"
    for it in items:
        if not isinstance(it.get("location"), str) or not _LOCATION.fullmatch(it["location"]):
            return f"bad location {it.get('location')!r}"
        if not it.get("rrdatas") and not it.get("healthCheckedTargets"):
            return f"an item without rrdatas at {it['location']}"
        bad = _bad_rdata(rs["type"], it.get("rrdatas", []))
        if bad:
            return bad
    return None


def _bad_rdata(rtype: str, values: list[str]) -> str | None:
    if rtype == "A" and not all(re.fullmatch(r"[\d.]+", v) for v in values):
        return "bad rdata"
    return None


def _err(code: int, reason: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message,
                      "errors": [{"reason": reason, "message": message}]}}
