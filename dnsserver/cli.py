"""The ``fedns`` command line.

Local commands read a config file (``serve``, ``check``, ``records``, ``demo``);
operator commands talk to a running server's HTTP API (``drain``, ``undrain``,
``status``, ``explain``, ``reload``). Plugins add commands through the ``fedns.commands``
entry points (``add_commands(subparsers)``; each sub-parser sets
``func=callable(args) -> int``), so dnsserver never imports providers.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import importlib.metadata
import json
import logging
import os
import signal
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from config.advice import Budget, ConfigWarning, Delay, failover_budget, secs
from config.errors import ConfigError
from config.model import Config
from healthwatch.model import split_service
from healthwatch.snapshot import Snapshot

log = logging.getLogger("dnsserver.cli")

COMMANDS_GROUP = "fedns.commands"
DEFAULT_API = "http://127.0.0.1:8053"
HTTP_TIMEOUT = 10.0

LONG_RUNNING = ("serve", "demo")  # commands whose INFO events are the point

EXIT_OK = 0
EXIT_FAIL = 1
EXIT_USAGE = 2
EXIT_WARNINGS = 3  # ``check --strict``: the config loads, but has warnings


class CliError(Exception):
    """A failure to report on stderr and exit non-zero; never a traceback.

    ``details`` (e.g. every config problem) are printed first, one per line.
    """

    def __init__(self, message: str, details: Sequence[str] = ()) -> None:
        self.details = tuple(details)
        super().__init__(message)


# -- config ----------------------------------------------------------------------


def load_config(path: str) -> Config:
    """Load ``path`` or raise CliError listing every problem, one per line."""
    from config.loader import load

    try:
        return load(path)
    except ConfigError as exc:
        lines = [str(p) for p in exc.problems] or [str(exc)]
        n = len(lines)
        raise CliError(f"{path}: {n} problem{'s' if n != 1 else ''}; config rejected",
                       lines) from exc
    except OSError as exc:
        raise CliError(f"{path}: cannot read config: {exc.strerror or exc}") from exc


def cmd_check(args: argparse.Namespace) -> int:
    from config.loader import advice

    if args.timeout is not None and args.clusters is None:
        raise CliError("--timeout applies to --clusters only")
    config = load_config(args.config)
    if args.clusters is not None:
        _preflight_arguments(config, args)  # before any output
    budget = failover_budget(config)
    found = advice(config, args.config)
    preflight_rc = EXIT_OK
    if args.json:
        doc = _check_json(args.config, config, budget, found)
        if args.clusters is not None:
            doc["preflight"], preflight_rc = _preflight(config, args, as_json=True)
        print(json.dumps(doc, indent=2, sort_keys=True))
    else:
        sys.stdout.write(format_check(args.config, config, budget, found))
        if args.clusters is not None:
            sys.stdout.flush()  # the offline result first: the preflight takes a while
            text, preflight_rc = _preflight(config, args, as_json=False)
            sys.stdout.write(f"\n{text}")
    rc = EXIT_OK
    if found and args.strict:
        n = len(found)
        print(f"fedns check: error: {n} warning{'s' if n != 1 else ''} and --strict",
              file=sys.stderr)
        rc = EXIT_WARNINGS
    return _worse(rc, preflight_rc)


def _preflight_arguments(config: Config, args: argparse.Namespace) -> None:
    """``--clusters NAME`` and ``--timeout`` checked against ``config``, so a
    typo is an error before the offline check prints anything."""
    from healthwatch.kube.preflight import PreflightError, preflight_options, select

    try:
        select(config, args.clusters or None)
        preflight_options(config.kubernetes, args.timeout)
    except PreflightError as exc:
        raise CliError(str(exc)) from exc


def _preflight(config: Config, args: argparse.Namespace, *, as_json: bool) -> tuple[Any, int]:
    """``check --clusters``: the member clusters' preflight (text, or JSON
    data) and its exit status (healthwatch/kube/preflight.py)."""
    from healthwatch.kube.preflight import PreflightError
    from healthwatch.kube.preflight_format import run_preflight

    try:
        return run_preflight(config, clusters=args.clusters or None, timeout=args.timeout,
                             as_json=as_json)
    except PreflightError as exc:
        raise CliError(str(exc)) from exc


def _worse(a: int, b: int) -> int:
    """The worse of two ``check`` statuses: a failure, else warnings, else ok."""
    for rc in (EXIT_FAIL, EXIT_WARNINGS):
        if rc in (a, b):
            return rc
    return EXIT_OK


def _counts(config: Config) -> dict[str, int]:
    return {"regions": len(config.regions), "clusters": len(config.clusters),
            "services": sum(len(c.services) + len(c.ingresses) for c in config.clusters),
            "static records": len(config.records), "providers": len(config.providers)}


def format_check(path: str, config: Config, budget: Budget,
                 found: Sequence[ConfigWarning]) -> str:
    """The ok line, the failover budget table, then one line per warning."""
    counts = ", ".join(f"{n} {what}" for what, n in _counts(config).items())
    out = [f"{path}: ok: zone {config.zone} federation {config.federation}, {counts}\n",
           "failover budget (seconds; clients move within detection + publish + ttl):\n",
           _indent(table(["FAILURE", "DETECTION", "PUBLISH", "TTL", "TOTAL"],
                         [*(_budget_row(d) for d in budget.failover),
                          *(_budget_row(d, "recovery: ") for d in budget.recovery)]))]
    out.extend(f"note: {note}\n" for note in budget.notes)
    for w in found:
        where = f"{path}:{w.line}" if w.line is not None else path
        out.append(f"warning[{w.code}] {where}: {w.message}\n")
    return "".join(out)


def _budget_row(d: Delay, prefix: str = "") -> list[str]:
    """One failure path: each part as its number, and how it was computed."""
    who = f" ({_who(d.applies_to)})" if d.applies_to else ""
    publish = _num(d.publish)
    if d.publish_formula != secs(d.publish):
        publish += f" = {d.publish_formula}"
    total = _num(d.total) + (f" + {d.unknown}" if d.unknown else "")
    return [f"{prefix}{d.failure}{who}", f"{_num(d.detection)} = {d.detection_formula}",
            publish, str(d.ttl), total]


def _num(seconds: float) -> str:
    return secs(seconds).removesuffix("s")


def _who(names: Sequence[str]) -> str:
    return ", ".join(names) if len(names) <= 3 else f"{len(names)} clusters"


def _check_json(path: str, config: Config, budget: Budget,
                found: Sequence[ConfigWarning]) -> dict[str, Any]:
    return {"file": path, "ok": True, "zone": config.zone, "federation": config.federation,
            "counts": _counts(config), "budget": budget.to_json(),
            "warnings": [w.to_json() for w in found]}


def cmd_serve(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    if args.workers is not None:  # --workers N overrides server.workers
        if args.workers < 1:
            raise CliError("--workers must be at least 1")
        config = dataclasses.replace(
            config, server=dataclasses.replace(config.server, workers=args.workers))
    from dnsserver.app import App, log_config_warnings

    log_config_warnings(config, args.config)

    async def run() -> None:
        await App(config, config_path=args.config).run()

    _serve(run())
    return EXIT_OK


def cmd_records(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    snap = _run_async(snapshot_for(config, wait=args.wait))
    if args.all:
        localities: Sequence[str] = snap.localities
    else:
        localities = [args.locality]
        if args.locality not in snap.localities:
            known = ", ".join(repr(x) for x in snap.localities)
            raise CliError(f"unknown locality {args.locality!r}; known: {known}")
    sys.stdout.write(render_zone(snap, localities))
    return EXIT_OK


async def snapshot_for(config: Config, *, wait: float | None = None) -> Snapshot:
    """The Snapshot a fresh server would publish for ``config`` right now.

    Runs the engine (sources and probes) until every source has reported and
    every probe has a first result, or ``wait`` seconds. The config's
    ``drains`` and the API's drains in ``state_dir`` are honoured (not those
    that have expired, nor API drains of clusters no longer configured: a
    server ignores them too); nothing is written there.
    """
    from healthwatch.drains import Drains
    from healthwatch.engine import Engine
    from healthwatch.state import StateStore

    drains = Drains(StateStore(config.state_dir)).load().active(time.time())
    engine = Engine(replace(config, state_dir=None))
    configured = {c.name for c in config.clusters}
    for d in drains.entries():
        if d.cluster in configured:
            engine.drain(d.cluster, d.service)
    h = config.health
    budget = wait if wait is not None else 2 * h.interval + h.timeout + 1.0
    await engine.start()
    try:
        deadline = time.monotonic() + budget
        while time.monotonic() < deadline:
            probes = engine.status().get("probes", [])
            if engine.ready and all(p.get("up") is not None for p in probes):
                await asyncio.sleep(0.1)  # let the planner publish the last verdict
                break
            await asyncio.sleep(0.05)
        return engine.snapshot
    finally:
        await engine.stop()


def render_zone(snap: Snapshot, localities: Sequence[str]) -> str:
    """Zone-file text: one view per locality, records sorted, names absolute."""
    generated = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(snap.generated_at))
    out = [f"; zone {snap.zone} serial {snap.serial} generated {generated}\n",
           f"$ORIGIN {snap.zone}\n", f"$TTL {snap.ttl}\n"]
    for loc in localities:
        label = loc or "static (unknown client; what providers publish)"
        out.append(f"\n; view: {label}\n")
        out.extend(r.zone_line() + "\n" for r in snap.view(loc))
    return "".join(out)


def cmd_demo(args: argparse.Namespace) -> int:
    from dnsserver.demo import run_demo

    _serve(run_demo(dns_port=args.dns_port, http_port=args.http_port,
                    backend_port=args.backend_port, banner=not args.quiet,
                    kubernetes=not args.static))
    return EXIT_OK


def _serve(coro: Any) -> None:
    """Run a server coroutine; startup failures (ports in use, ...) become CliError."""
    from dnsserver.errors import DnsServerError
    from healthwatch.errors import HealthwatchError

    try:
        _run_async(coro)
    except (DnsServerError, HealthwatchError) as exc:
        raise CliError(str(exc)) from exc
    except ConfigError as exc:
        raise CliError("config rejected", [str(p) for p in exc.problems]) from exc
    except OSError as exc:
        raise CliError(f"cannot start: {exc}") from exc


def _run_async(coro: Any) -> Any:
    """Run on asyncio; FEDNS_LOOP=uvloop picks uvloop when installed (extra ``fast``)."""
    if os.environ.get("FEDNS_LOOP", "asyncio") == "uvloop":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.run(coro)
    return asyncio.run(coro)


# -- HTTP API client ------------------------------------------------------------------


def api_request(args: argparse.Namespace, method: str, path: str,
                payload: dict[str, Any] | None = None) -> Any:
    """Call the running server's API (``payload`` sent as JSON); return the decoded
    JSON body."""
    url = args.api.rstrip("/") + path
    data = json.dumps(payload).encode() if payload else (b"" if method != "GET" else None)
    req = urllib.request.Request(url, method=method, data=data)
    if payload:
        req.add_header("Content-Type", "application/json")
    token = args.token or os.environ.get("FEDNS_API_TOKEN")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=args.timeout) as resp:
            return json.loads(resp.read().decode() or "null")
    except urllib.error.HTTPError as exc:
        body = exc.read().decode(errors="replace")
        try:
            detail = json.loads(body)
        except ValueError:
            detail = body.strip()
        if isinstance(detail, dict) and detail.get("problems"):
            raise CliError(f"{method} {url}: HTTP {exc.code}: rejected",
                           [str(p) for p in detail["problems"]]) from exc
        if isinstance(detail, dict) and "error" in detail:
            detail = detail["error"]
        raise CliError(f"{method} {url}: HTTP {exc.code}: {detail}") from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise CliError(f"{method} {url}: cannot reach fedns: {reason}") from exc


def _drain_path(cluster: str, service: str | None) -> str:
    path = "/v1/drains/" + urllib.parse.quote(cluster, safe="")
    if service:
        try:
            kind, ns, name = split_service(service)
        except ValueError as e:
            raise CliError(f"service: {e}") from None
        path += f"/{urllib.parse.quote(ns, safe='')}/{urllib.parse.quote(name, safe='')}"
        if kind != "service":
            path += f"?kind={kind}"
    return path


def cmd_drain(args: argparse.Namespace) -> int:
    path = _drain_path(args.cluster, args.service)
    what = args.cluster + (f" {args.service}" if args.service else "")
    if args.command == "undrain":
        print(_undrain_note(what, api_request(args, "DELETE", path)))
        return EXIT_OK
    options = {k: v for k, v in (("reason", args.reason), ("for", args.duration))
               if v is not None}
    doc = api_request(args, "POST", path, options)
    drain = doc.get("drain") if isinstance(doc, dict) else None
    print(f"drained {what}" + (_drain_note(drain, time.time())
                               if isinstance(drain, dict) else ""))
    return EXIT_OK


# how a drain that the API cannot end is ended, by its source (the label that
# ``still_drained`` gives it: ``us (config)``)
_DECLARED_ENDS = {
    "config": "a config drain ends when it is removed from the config's drains and the "
              "config reloaded",
    "annotation": 'an annotation drain ends when its object\'s fedns.io/drain annotation '
                  'is removed or set to "false"',
}


def _undrain_note(what: str, doc: Any) -> str:
    """What an undrain did: ``undrained us``, or ``us was not drained``, and
    the drains that still keep it (or part of it) out: a command to end each
    of the API's, and how the config's and the annotations' end."""
    doc = doc if isinstance(doc, dict) else {}
    out = (f"{what} was not drained (nothing changed)" if doc.get("was_drained") is False
           else f"undrained {what}")
    still = [t for t in doc.get("still_drained") or [] if isinstance(t, str)]
    if not still:
        return out
    api = [t for t in still if _label_source(t) == "api"]
    hints = ["to end: " + "; ".join("fedns undrain " + t.replace("/", " ", 1) for t in api)
             ] if api else []
    hints += [end for source, end in _DECLARED_ENDS.items()
              if any(_label_source(t) == source for t in still)]
    return out + f"\nstill drained: {', '.join(still)} ({'; '.join(hints)})"


def _label_source(label: str) -> str:
    """The source a ``still_drained`` label names: ``us (config)`` -> config;
    a bare target is the API's."""
    for source in _DECLARED_ENDS:
        if label.endswith(f" ({source})"):
            return source
    return "api"


def _drain_note(d: dict[str, Any], now: float) -> str:
    """`` until 2025-05-01T12:00:00Z (in 2h0m): reason`` of a drain as JSON."""
    until = d.get("until")
    out = ""
    if isinstance(until, int | float):
        out += f" until {_utc(until)} (in {_span(until - now)})"
    if d.get("reason"):
        out += f": {d['reason']}"
    return out


def _utc(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def _span(seconds: float) -> str:
    """A short human duration: ``45s``, ``12m30s``, ``3h5m``, ``2d4h``."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60}m"
    return f"{s // 86400}d{s % 86400 // 3600}h"


def cmd_reload(args: argparse.Namespace) -> int:
    if args.pid is not None:
        try:
            os.kill(args.pid, signal.SIGHUP)
        except OSError as exc:
            raise CliError(f"cannot signal pid {args.pid}: {exc.strerror or exc}") from exc
        print(f"sent SIGHUP to {args.pid}")
        return EXIT_OK
    body = api_request(args, "POST", "/v1/reload")
    print(f"reloaded: serial {body.get('serial')}")
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    doc = api_request(args, "GET", "/v1/status")
    if args.json:
        print(json.dumps(doc, indent=2, sort_keys=True))
    else:
        sys.stdout.write(format_status(doc))
    return EXIT_OK


def cmd_explain(args: argparse.Namespace) -> int:
    params = {"name": args.name, "type": args.type, "client": args.client}
    if args.subnet:
        params["subnet"] = args.subnet
    doc = api_request(args, "GET", "/v1/explain?" + urllib.parse.urlencode(params))
    if args.json:
        print(json.dumps(doc, indent=2, sort_keys=True))
    else:
        sys.stdout.write(format_explain(doc))
    return EXIT_OK


def format_explain(doc: dict[str, Any]) -> str:
    """A readable rendering of ``/v1/explain``."""
    q = doc.get("question") or {}
    ans = doc.get("answer") or {}
    client = doc.get("client") or {}
    who = f"client {q.get('client')}" + (f" subnet {q['subnet']}" if q.get("subnet") else "")
    out = [f"{q.get('name')} {q.get('type')} for {who}  (serial {doc.get('serial')}"
           + (", STALE: last-known-good" if doc.get("stale") else "") + ")\n",
           f"answer: {ans.get('rcode')}" + (" aa" if ans.get("aa") else "")
           + (f"  ECS scope /{ans['ecs_scope']}" if ans.get("ecs_scope") is not None else "")
           + ("  (truncated over UDP)" if ans.get("truncated_over_udp") else "") + "\n"]
    out.extend(f"  {line}\n" for line in ans.get("answer") or [])
    out.extend(f"  authority: {line}\n" for line in ans.get("authority") or [])
    out.append(f"client placed in: {client.get('locality') or 'unknown'}  by {client.get('by')}"
               f": {client.get('evidence')}: {client.get('detail')}\n")
    if client.get("note"):
        out.append(f"  note: {client['note']}\n")
    out.append(f"why: {doc.get('summary')}\n")
    for n in doc.get("names") or []:
        geo = n.get("geo")
        if geo is None:
            detail = n.get("detail") or ""
            level = n.get("service_level")
            if level:
                detail += (f"; {level['level']} name of {level['service']}: {level['rule']}; "
                           f"healthy shards there: {level['healthy']}")
            out.append(f"  {n.get('name')}: {n.get('kind')}: {detail}\n")
            continue
        out.append(f"  {n.get('name')}: geo-aware, {geo.get('service')}; fallback chain for "
                   f"{geo.get('locality') or 'unknown client'}:\n")
        rows = []
        for lv in geo.get("chain") or []:
            shards = lv.get("shards") or []
            rows.append([_yn(lv.get("answered")), lv.get("level"), lv.get("healthy"),
                         "; ".join(_shard_line(s) for s in shards) or "(no shard)"])
        out.append(_indent(table(["ANSWERED", "LEVEL", "HEALTHY", "SHARDS"], rows)))
        if geo.get("note"):
            out.append(f"    note: {geo['note']}\n")
    return "".join(out)


def _shard_line(s: dict[str, Any]) -> str:
    addrs = ",".join([*s.get("addresses", []), *s.get("hostnames", [])]) or "no address"
    state = "healthy" if s.get("healthy") else "UNHEALTHY"
    drained = " drained" if s.get("drained") else ""
    return f"{s.get('cluster')} {addrs} {state}{drained} ({s.get('reason')})"


def _indent(text: str) -> str:
    return "".join(f"    {line}\n" for line in text.splitlines())


# -- status table ----------------------------------------------------------------------


def _yn(v: Any) -> str:
    return "-" if v is None else ("yes" if v else "no")


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers]] + [["-" if c in (None, "") else str(c) for c in r]
                                          for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    out = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
           for r in cells]
    return "\n".join(out) + "\n"


def format_status(doc: dict[str, Any], now: float | None = None) -> str:
    """A readable rendering of ``/v1/status``."""
    now = time.time() if now is None else now
    snap = doc.get("snapshot") or {}
    age = snap.get("age_seconds")
    head = (f"zone {doc.get('zone')}  federation {doc.get('federation')}  "
            f"ready {_yn(doc.get('ready'))}  serial {snap.get('serial', '-')}  "
            f"age {'-' if age is None else f'{age:.1f}s'}"
            + ("  STALE (last-known-good, not yet confirmed)" if doc.get("stale") else ""))
    parts = [head + "\n"]
    clusters = doc.get("clusters") or []
    parts.append("\nCLUSTERS\n")
    parts.append(table(
        ["NAME", "REGION", "ZONE", "SOURCE", "SYNCED", "REACHABLE", "CONTACT", "DRAINED",
         "LAST ERROR"],
        [[c.get("name"), c.get("region"), c.get("zone"), c.get("source"), _yn(c.get("synced")),
          _yn(c.get("reachable")), _contact(c, now), _yn(c.get("drained")), c.get("last_error")]
         for c in clusters]))
    shards = doc.get("shards") or []
    parts.append("\nSHARDS\n")
    parts.append(table(
        ["SERVICE", "CLUSTER", "ZONE", "ADDRESSES", "READY", "HEALTH", "REASON"],
        [[s.get("service"), s.get("cluster"), s.get("zone"),
          ",".join([*s.get("addresses", []), *s.get("hostnames", [])]), s.get("ready"),
          "healthy" if s.get("healthy") else "UNHEALTHY", s.get("reason")]
         for s in shards]))
    drains = doc.get("drains") or {}
    dc = ", ".join(drains.get("clusters") or []) or "-"
    ds = ", ".join(drains.get("shards") or []) or "-"
    parts.append(f"\nDRAINS  clusters: {dc}   shards: {ds}\n")
    details = doc.get("drain_details") or []
    if details:
        parts.append(_indent(table(
            ["TARGET", "SOURCE", "SINCE", "EXPIRES", "BY", "REASON"],
            # one row per target and source; a server from before sources: the API's
            [[d.get("target"), d.get("source") or "api", _since(d, now), _expires(d, now),
              d.get("by"), d.get("reason")] for d in details])))
    providers = doc.get("providers") or []
    parts.append("\nPROVIDERS\n")
    if providers:
        keys: list[str] = []
        for p in providers:
            for k in p:
                if k not in keys:
                    keys.append(k)
        parts.append(table([k.upper() for k in keys],
                           [[_cell(p.get(k)) for k in keys] for p in providers]))
    else:
        parts.append("(none configured)\n")
    return "".join(parts)


def _contact(cluster: dict[str, Any], now: float) -> str:
    """How long ago a Kubernetes cluster's API answered last (``/v1/status``
    keeps it live: heartbeats count); "-" for a static cluster, which contacts
    nothing, and for one never reached."""
    at = cluster.get("last_contact")
    if cluster.get("source") != "kubernetes" or not isinstance(at, int | float):
        return "-"
    return f"{max(0.0, now - at):.0f}s ago"


def _since(d: dict[str, Any], now: float) -> str:
    since = d.get("since")
    if not isinstance(since, int | float):
        return "unknown"
    return f"{_utc(since)} ({_span(now - since)} ago)"


def _expires(d: dict[str, Any], now: float) -> str:
    until = d.get("until")
    if not isinstance(until, int | float):
        return "never"
    return f"{_utc(until)} (in {_span(until - now)})"


def _cell(v: Any) -> str:
    if isinstance(v, bool):
        return _yn(v)
    if isinstance(v, dict | list):
        return json.dumps(v, separators=(",", ":"))
    return "-" if v is None else str(v)


# -- parser --------------------------------------------------------------------------------


def _common(p: argparse.ArgumentParser, *, suppress: bool) -> None:
    d: Any = argparse.SUPPRESS if suppress else None
    p.add_argument("--log-format", choices=["text", "json"],
                   default=d if suppress else "text", help="log line format (default text)")
    p.add_argument("--log-level", default=d,
                   type=str.upper, choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                   help="minimum level logged (default INFO for serve/demo, else WARNING)")


def _api_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--api", default=os.environ.get("FEDNS_API", DEFAULT_API),
                   help=f"HTTP API of the running server (default {DEFAULT_API}, env FEDNS_API)")
    p.add_argument("--token", default=None,
                   help="API bearer token (default: env FEDNS_API_TOKEN)")
    p.add_argument("--timeout", type=float, default=HTTP_TIMEOUT, help="seconds per request")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fedns",
        description="Global DNS / L7 traffic director for services in many Kubernetes clusters.")
    _common(parser, suppress=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    common = argparse.ArgumentParser(add_help=False)
    _common(common, suppress=True)

    def add(name: str, func: Callable[[argparse.Namespace], int], help: str
            ) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help, parents=[common])
        p.set_defaults(func=func)
        return p

    p = add("serve", cmd_serve, "run the authoritative DNS server, HTTP API and publishers")
    p.add_argument("-c", "--config", required=True, help="YAML config file")
    p.add_argument("--workers", type=int, default=None,  # overrides server.workers
                   help="processes answering DNS on one port (SO_REUSEPORT; default: "
                        "server.workers of the config)")
    p = add("check", cmd_check, "validate a config file; print every problem, then the "
                                "failover budget and warnings about risky settings")
    p.add_argument("-c", "--config", required=True, help="YAML config file")
    p.add_argument("--strict", action="store_true",
                   help=f"exit {EXIT_WARNINGS} when the config has warnings")
    p.add_argument("--json", action="store_true",
                   help="budget and warnings (and the --clusters preflight) as JSON")
    p.add_argument("--clusters", nargs="*", metavar="NAME", default=None,
                   help="then check the source: kubernetes clusters (all, or those NAMEd) "
                        "through their API: kubeconfig, reachability, credentials, RBAC, "
                        "Node labels, federated objects; exit 1 on a failure, "
                        f"{EXIT_WARNINGS} on warnings")
    p.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                   help="with --clusters: no wait of a call (connect, answer, exec plugin) "
                        "longer than this (default: the config's kubernetes block)")
    p = add("records", cmd_records, "print the zone as it would be served, in zone-file format")
    p.add_argument("-c", "--config", required=True, help="YAML config file")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--locality", default="",
                   help="view of one client locality, e.g. zone:us-east1-b or region:us-east1 "
                        "(default: the static view, unknown client)")
    g.add_argument("--all", action="store_true", help="one view per locality")
    p.add_argument("--wait", type=float, default=None,
                   help="seconds to let probes settle (default: from the health settings)")
    for name, verb in (("drain", "drain"), ("undrain", "undrain")):
        p = add(name, cmd_drain, f"{verb} a cluster, or one service of it, on a running server")
        p.add_argument("cluster", help="member cluster name")
        p.add_argument("service", nargs="?",
                       help="NAMESPACE/NAME, ingress:NAMESPACE/NAME or httproute:NAMESPACE/NAME "
                            "(default: whole cluster)")
        if name == "drain":
            p.add_argument("--reason", default=None,
                           help="why (printable text, at most 200 characters); shown by "
                                "fedns status and logged")
            p.add_argument("--for", dest="duration", default=None, metavar="DURATION",
                           help="end the drain by itself after DURATION (e.g. 30m, 2h; at "
                                "most 7 days; default: until undrained). Draining again "
                                "replaces the expiry (and the reason, if given)")
        _api_args(p)
    p = add("status", cmd_status, "clusters, shards, health, drains and providers of a server")
    p.add_argument("--json", action="store_true", help="raw /v1/status JSON")
    _api_args(p)
    p = add("explain", cmd_explain,
            "why a client gets its answer: the answer, its locality and the fallback chain")
    p.add_argument("name", help="the name asked, e.g. nginx.default.myfed.svc.example.com")
    p.add_argument("--type", default="A", help="query type (default A)")
    p.add_argument("--client", default="127.0.0.1",
                   help="the resolver's (source) address (default 127.0.0.1)")
    p.add_argument("--subnet", default=None,
                   help="EDNS Client Subnet the resolver sends, e.g. 198.51.100.0/24")
    p.add_argument("--json", action="store_true", help="raw /v1/explain JSON")
    _api_args(p)
    p = add("reload", cmd_reload, "make a running server reload its config file")
    p.add_argument("--pid", type=int, default=None, help="send SIGHUP to this pid instead")
    _api_args(p)
    p = add("demo", cmd_demo,
            "run a simulated 3-cluster federation on loopback (DNS :5353, HTTP :8053)")
    p.add_argument("--dns-port", type=int, default=5353)
    p.add_argument("--http-port", type=int, default=8053)
    p.add_argument("--backend-port", type=int, default=8080,
                   help="port of the simulated load balancers on 127.0.N.1 (0: any free)")
    p.add_argument("--static", action="store_true",
                   help="static member clusters instead of simulated Kubernetes API servers")
    p.add_argument("--quiet", action="store_true", help="do not print the walkthrough")
    _add_plugin_commands(sub)
    return parser


def _add_plugin_commands(sub: Any) -> None:
    for ep in importlib.metadata.entry_points(group=COMMANDS_GROUP):
        try:
            ep.load()(sub)
        except Exception as exc:  # a broken plugin must not break the core CLI
            log.warning("command_plugin_failed plugin=%s error=%r", ep.name, exc)


def main(argv: Sequence[str] | None = None) -> int:
    from dnsserver.logs import setup

    pre = argparse.ArgumentParser(add_help=False)
    _common(pre, suppress=False)
    early, _ = pre.parse_known_args(argv)
    setup(early.log_format, early.log_level or "WARNING")  # plugin problems are logged
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.log_level is None:
        args.log_level = "INFO" if args.command in LONG_RUNNING else "WARNING"
    setup(args.log_format, args.log_level)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        rc = func(args)
    except CliError as exc:
        for line in exc.details:
            print(line, file=sys.stderr)
        print(f"fedns {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_FAIL
    except KeyboardInterrupt:
        return 130
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
