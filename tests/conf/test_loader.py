"""config.loader: good configs load with the right values; bad ones report every problem."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

import pytest

from config.errors import ConfigError, Problem
from config.loader import load, load_text
from config.model import HttpProbe, TcpProbe

FIXTURES = Path(__file__).parent / "fixtures"
EXAMPLE = Path(__file__).parents[2] / "config" / "example.yaml"

BASE = """\
zone: Example.COM
federation: MyFed
regions:
  us-east1: {location: [33.8, -84.4], zones: [us-east1-b], fallback: [europe-west1]}
  europe-west1: {location: [50.4, 3.8], zones: [europe-west1-b], countries: [gb, NO]}
"""


def problems_of(text: str) -> list[Problem]:
    with pytest.raises(ConfigError) as info:
        load_text(text, "t.yaml")
    return info.value.problems


# (extra YAML appended to BASE, attribute path on the Config, expected value)
GOOD = [
    ("", "zone", "example.com."),
    ("", "federation", "myfed"),
    ("", "ttl", 30),
    ("ttl: 5\n", "ttl", 5),
    ("", "health.interval", 1.0),
    ("health: {interval: 2s, timeout: 1500ms}\n", "health.timeout", 1.5),
    ("health: {cluster_grace: 1m}\n", "health.cluster_grace", 60.0),
    ("health: {when_all_unhealthy: nxdomain}\n", "health.when_all_unhealthy", "nxdomain"),
    ("", "regions[1].countries", ("GB", "NO")),
    ("", "regions[0].fallback", ("europe-west1",)),
    ("", "regions[0].location", (33.8, -84.4)),
    (
        "listen: {dns: ['[::1]:53', '0.0.0.0:5353']}\n",
        "listen.dns",
        (("::1", 53), ("0.0.0.0", 5353)),
    ),
    ("listen: {http: '127.0.0.2:0'}\n", "listen.http", ("127.0.0.2", 0)),
    ("nameservers: {ns1: [192.0.2.1]}\n", "nameservers", (("ns1.example.com.", ("192.0.2.1",)),)),
    ("nameservers: {ns.other.net.: []}\n", "nameservers", (("ns.other.net.", ()),)),
    ("admin_email: dns.admin@Example.com\n", "admin_email", "dns\\.admin.example.com."),
    ("", "admin_email", "hostmaster.example.com."),
    ("admin_email: root\n", "admin_email", "root.example.com."),
    ("records: [{name: '@', type: a, value: 192.0.2.1}]\n", "records[0].name", "example.com."),
    ("records: [{name: '@', type: a, value: 192.0.2.1}]\n", "records[0].rtype", "A"),
    ("records: [{name: X, type: CNAME, value: y}]\n", "records[0].value", "y.example.com."),
    ("records: [{name: t, type: TXT, value: a b, ttl: 60}]\n", "records[0].ttl", 60),
    ("records: [{name: t, type: TXT, value: a b}]\n", "records[0].value", '"a b"'),
    (
        "records: [{name: '*.w', type: A, value: 192.0.2.1}]\n",
        "records[0].name",
        "*.w.example.com.",
    ),
    ("server: {tcp_idle_timeout: 2.5s, max_answers: 4}\n", "server.tcp_idle_timeout", 2.5),
    (
        "server: {notify_allow: [10.0.0.0/8]}\n",
        "server.notify_allow",
        (ipaddress.ip_network("10.0.0.0/8"),),
    ),
    (
        "geo: {networks: [{network: 10.0.0.0/8, region: us-east1}]}\n",
        "geo.networks[0].region",
        "us-east1",
    ),
    ("geo: {cluster_local: true, ipv4_cache_prefix: 20}\n", "geo.ipv4_cache_prefix", 20),
]


def _get(obj: object, dotted: str) -> object:
    for part in dotted.split("."):
        m = re.fullmatch(r"(\w+)(?:\[(\d+)\])?", part)
        assert m
        obj = getattr(obj, m[1])
        if m[2] is not None:
            obj = obj[int(m[2])]  # type: ignore[index]
    return obj


@pytest.mark.parametrize(("extra", "attr", "want"), GOOD)
def test_good_config_values(extra: str, attr: str, want: object) -> None:
    assert _get(load_text(BASE + extra), attr) == want


CLUSTERS = """\
clusters:
  - name: us
    zone: us-east1-b
    networks: [10.0.0.0/14, "fd00::/64"]
    services:
      - {name: Nginx, namespace: default, addresses: [192.0.2.10, "2001:DB8::1"], ready: 2,
         cluster_ip: 10.3.0.1, weight: 5,
         probe: {http: "http://192.0.2.10:8080/healthz", host: nginx.example.com, status: 200-299}}
      - {name: db, namespace: data, hostnames: [lb.Example.net], probe: {tcp: "[2001:db8::1]:5432"}}
    ingresses:
      - {name: shop, namespace: web, hosts: [shop, "*.shop.example.com."], addresses: [192.0.2.20]}
  - name: k8s
    source: kubernetes
    kubeconfig: kube/config
    context: fed-eu
    federation: {mode: serviceexport}
    default_probe: http
"""


def test_clusters_services_and_probes() -> None:
    cfg = load_text(BASE + CLUSTERS, "t.yaml", base_dir="/etc/fedns")
    us, k8s = cfg.clusters
    assert (us.region, us.zone, us.source) == ("us-east1", "us-east1-b", "static")
    assert [str(n) for n in us.networks] == ["10.0.0.0/14", "fd00::/64"]
    nginx, db = us.services
    assert (nginx.name, nginx.addresses, nginx.ready, nginx.weight) == (
        "nginx",
        ("192.0.2.10", "2001:db8::1"),
        2,
        5,
    )
    assert nginx.probe == HttpProbe("http://192.0.2.10:8080/healthz", "nginx.example.com", 200, 299)
    assert db.probe == TcpProbe("2001:db8::1", 5432)
    assert db.hostnames == ("lb.example.net.",)
    assert us.ingresses[0].hosts == ("shop.example.com.", "*.shop.example.com.")
    assert (k8s.region, k8s.zone, k8s.kubeconfig) == (None, None, "/etc/fedns/kube/config")
    assert (k8s.federation.mode, k8s.default_probe) == ("serviceexport", "http")


def test_providers_settings() -> None:
    text = (
        BASE
        + """\
nameservers: {ns1: [192.0.2.53]}
providers:
  - {type: coredns-etcd, endpoints: ["http://127.0.0.1:2379"]}
  - {type: route53, name: r53, hosted_zone_id: /hostedzone/Z0123, endpoint_url: null,
     debounce: 250ms, delegate: true}
  - {type: clouddns, project: p, managed_zone: fed, endpoint_url: "http://127.0.0.1:9/",
     timeout: 3s, owner_id: me, max_change_fraction: 0.5}
"""
    )
    etcd, r53, gcd = load_text(text).providers
    assert (etcd.name, etcd.get("endpoints"), etcd.get("prefix")) == (
        "coredns-etcd",
        ("http://127.0.0.1:2379",),
        "/skydns",
    )
    assert (r53.name, r53.get("hosted_zone_id"), r53.get("endpoint_url"), r53.debounce) == (
        "r53",
        "Z0123",
        None,
        0.25,
    )
    assert r53.delegate and r53.get("timeout") == 10.0
    assert (gcd.get("project"), gcd.get("managed_zone"), gcd.get("timeout")) == ("p", "fed", 3.0)
    assert (gcd.owner_id, gcd.max_change_fraction) == ("me", 0.5)


def test_provider_retry_and_rate_settings() -> None:
    text = BASE + """\
providers:
  - {type: route53, hosted_zone_id: Z0123, requests_per_second: 2.5, attempts: 8,
     backoff: 250ms, marker_ttl: 60}
  - {type: clouddns, project: p, managed_zone: fed, attempts: 3, backoff: 2}
"""
    r53, gcd = load_text(text).providers
    assert [r53.get(k) for k in ("requests_per_second", "attempts", "backoff", "marker_ttl")] \
        == [2.5, 8, 0.25, 60]
    assert [gcd.get(k) for k in ("attempts", "backoff", "marker_ttl")] == [3, 2.0, None]


@pytest.mark.parametrize("setting", ["attempts: 0", "backoff: 0", "requests_per_second: 0",
                                     "marker_ttl: -1", "attempts: many"])
def test_bad_provider_retry_settings_are_refused(setting: str) -> None:
    block = f"providers:\n  - {{type: route53, hosted_zone_id: Z1, {setting}}}\n"
    probs = problems_of(BASE + block)
    assert probs and all("providers" in str(p) for p in probs), probs


def test_api_token_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEDNS_TEST_TOKEN", "s3cret-value")
    assert load_text(BASE + "api_token: ${FEDNS_TEST_TOKEN}\n").api_token == "s3cret-value"
    assert load_text(BASE + "api_token: literal\n").api_token == "literal"


def test_secret_never_in_messages() -> None:
    probs = problems_of(BASE + "api_token: [s3cret-value]\n")
    assert len(probs) == 1 and "s3cret" not in str(probs[0])


def test_yaml12_booleans_keep_country_codes() -> None:
    cfg = load_text(BASE)
    assert "NO" in cfg.regions[1].countries


def test_example_loads() -> None:
    cfg = load(str(EXAMPLE))
    assert cfg.zone == "example.com." and len(cfg.regions) == 3
    assert {c.source for c in cfg.clusters} == {"static", "kubernetes"}
    assert cfg.records and cfg.source_path == str(EXAMPLE)


def _expectations(path: Path) -> list[tuple[int, str]]:
    out = []
    for line in path.read_text().splitlines():
        if m := re.match(r"# expect: (\d+) (.*)$", line):
            out.append((int(m[1]), m[2]))
    return out


BAD = sorted(FIXTURES.glob("bad_*.yaml"))


@pytest.mark.parametrize("fixture", BAD, ids=[p.stem for p in BAD])
def test_bad_fixture_reports_its_failure(fixture: Path) -> None:
    want = _expectations(fixture)
    assert want, f"{fixture.name} declares no '# expect:' line"
    with pytest.raises(ConfigError) as info:
        load(str(fixture))
    got = info.value.problems
    assert [(p.line, p.file) for p in got] == [(line, str(fixture)) for line, _ in want], str(
        info.value
    )
    for problem, (_, message) in zip(got, want, strict=True):
        assert message in problem.message, str(info.value)


THREE_MISTAKES = """\
zone: example.com.
federation: f
regions:
  r: {location: [0, 0], zones: [z]}
health:
  interval: 1s
  timeout: soon
clusters:
  - name: c
    region: nowhere
    zone: z
    colour: blue
"""


def test_three_mistakes_all_reported_with_positions() -> None:
    with pytest.raises(ConfigError) as info:
        load_text(THREE_MISTAKES, "three.yaml")
    got = [(p.line, p.column) for p in info.value.problems]
    assert got == [(7, 12), (10, 13), (12, 5)], str(info.value)
    lines = str(info.value).splitlines()
    assert lines[0].startswith("three.yaml:7:12: health.timeout: invalid duration 'soon'")
    assert lines[1].startswith("three.yaml:10:13: clusters[0].region: unknown region 'nowhere'")
    assert lines[2].startswith("three.yaml:12:5: clusters[0].colour: unknown key 'colour'")


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config"):
        load(str(tmp_path / "missing.yaml"))


@pytest.mark.parametrize(
    "text",
    [
        "",
        "- a\n- b\n",
        "just a string\n",
        "zone: [\n",
        "!!python/object:os.system {}\n",
        "zone: &a [*a]\nfederation: f\n",
        "? [a, b]\n: c\n",
        "\x00",
    ],
)
def test_garbage_is_a_config_error(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_text(text, "g.yaml")
    assert info.value.problems and all(p.line >= 1 for p in info.value.problems)


def test_public_http_listener_is_accepted_with_a_token() -> None:
    text = (
        "zone: example.com.\nfederation: f\napi_token: s3cret\n"
        "listen: {http: \"0.0.0.0:8053\"}\n"
    )
    cfg = load_text(text)
    assert cfg.listen.http == ("0.0.0.0", 8053)
