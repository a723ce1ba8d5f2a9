"""config.advice: the failover budget of SPEC section 4 with the config's own
numbers, and the warnings about legal but risky settings (each one fires on
its setting, at its line, and not just below its threshold)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import dns.message
import dns.rrset
import pytest

from config.advice import CODES, PUBLISH_BOUND, failover_budget, fitting_answers, warnings
from config.loader import load, load_text
from tests.conf.test_loader import BASE, EXAMPLE

ROOT = Path(__file__).parents[2]
DEPLOY = ROOT / "config" / "deploy" / "fedns.yaml"

PROBED = """\
clusters:
  - name: us
    zone: us-east1-b
    services:
      - {name: web, namespace: default, addresses: [192.0.2.1], probe: {tcp: "192.0.2.1:80"}}
"""
KUBE = """\
  - {name: k8s, source: kubernetes, region: europe-west1, kubeconfig: /kc, context: eu}
"""
ETCD = '{type: coredns-etcd, endpoints: ["http://127.0.0.1:2379"]'


def codes(text: str) -> list[str]:
    return [w.code for w in warnings(load_text(text, "t.yaml"), text)]


def line_of(text: str, needle: str) -> int:
    """1-based line of the first line containing ``needle``."""
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def only(text: str, code: str) -> tuple[int | None, str]:
    """(line, message) of the single warning ``code`` for ``text``."""
    found = [w for w in warnings(load_text(text, "t.yaml"), text) if w.code == code]
    assert len(found) == 1, found
    return found[0].line, found[0].message


# -- the budget ------------------------------------------------------------------------------


def test_probe_row_is_interval_times_fall_plus_timeout_plus_publish_plus_ttl() -> None:
    text = BASE + "ttl: 20\nhealth: {interval: 2s, timeout: 1s, fall: 3, rise: 4}\n" + PROBED
    budget = failover_budget(load_text(text))
    [probe] = budget.failover  # static clusters only: no API row, no provider
    assert probe.detection == 2 * 3 + 1
    assert probe.publish == PUBLISH_BOUND == 0.1
    assert probe.ttl == 20
    assert probe.total == pytest.approx(7 + 0.1 + 20)
    assert probe.applies_to == ("us",)
    assert probe.unknown is None
    assert "interval 2s" in probe.detection_formula and "fall 3" in probe.detection_formula
    [back] = budget.recovery
    assert back.detection == 2 * 4 + 1  # the rise-th pass answers within its timeout
    assert back.total == pytest.approx(9 + 0.1 + 20)


def test_lost_api_row_only_for_kubernetes_clusters() -> None:
    static = load_text(BASE + PROBED)
    assert [d.failure for d in failover_budget(static).failover] == ["shard probe fails"]
    text = (BASE + "health: {cluster_grace: 4s}\n"
            "kubernetes: {heartbeat_interval: 1s, heartbeat_timeout: 2s}\n" + PROBED + KUBE)
    _, api = failover_budget(load_text(text)).failover
    assert api.detection == 1 + 4  # heartbeat_interval + cluster_grace (the larger)
    assert api.applies_to == ("k8s",)
    assert api.total == pytest.approx(5 + 0.1 + 30)
    slow = (BASE + "health: {cluster_grace: 1s}\n"
            "kubernetes: {heartbeat_interval: 1s, heartbeat_timeout: 3s}\n" + PROBED + KUBE)
    _, api = failover_budget(load_text(slow)).failover
    assert api.detection == 1 + 3  # heartbeat_timeout is the larger


def test_each_publishing_provider_adds_its_debounce_and_an_unknown_api_latency() -> None:
    text = (BASE + "nameservers: {ns1.example.com.: [192.0.2.53]}\n" + PROBED
            + f"providers:\n  - {ETCD}, name: slow, debounce: 2500ms}}\n"
            + f"  - {ETCD}, name: deleg, delegate: true}}\n")
    probe, slow = failover_budget(load_text(text)).failover  # the delegating one is not there
    assert "slow" in slow.failure
    assert slow.detection == probe.detection
    assert slow.publish == pytest.approx(0.1 + 2.5)
    assert slow.total == pytest.approx(probe.total + 2.5)
    assert slow.unknown is not None and "latency" in slow.unknown


def test_notes_say_what_the_numbers_do_not_cover() -> None:
    notes = failover_budget(load_text(BASE + PROBED + KUBE)).notes
    assert any("k8s" in n and "readiness" in n for n in notes)
    assert any("passing probe outranks" in n for n in notes)
    probed_kube = KUBE.replace("context: eu", "context: eu, default_probe: tcp")
    notes = failover_budget(load_text(BASE + PROBED + probed_kube)).notes
    assert not any("readiness" in n for n in notes)
    assert failover_budget(load_text(BASE + PROBED)).notes == ()
    unprobed = PROBED.replace(', probe: {tcp: "192.0.2.1:80"}', "")
    assert any("unprobed-static-shard" in n
               for n in failover_budget(load_text(BASE + unprobed)).notes)


def test_budget_serialises_with_totals() -> None:
    doc = failover_budget(load_text(BASE + PROBED)).to_json()
    [row] = doc["failover"]  # type: ignore[misc]
    assert row["total"] == pytest.approx(1 * 2 + 0.5 + 0.1 + 30)


# -- warnings --------------------------------------------------------------------------------


def test_shipped_examples_have_no_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEDNS_API_TOKEN", "x")
    monkeypatch.setenv("FEDNS_COOKIE_SECRET", "00" * 16)
    for path in (EXAMPLE, DEPLOY):
        assert warnings(load(str(path)), path.read_text()) == [], path


def test_codes_are_unique_and_stable() -> None:
    assert len(set(CODES)) == len(CODES)
    assert all(c == c.lower() and " " not in c for c in CODES)


def test_grace_at_or_below_heartbeat_timeout_plus_backoff() -> None:
    kube = BASE + PROBED + KUBE + "kubernetes: {heartbeat_timeout: 2s, backoff_base: 500ms}\n"
    at = kube + "health: {cluster_grace: 2.5s}\n"
    line, message = only(at, "grace-below-heartbeat")
    assert line == line_of(at, "cluster_grace")
    assert "2.5s" in message and "k8s" in message and "cluster_grace above 2.5s" in message
    assert "grace-below-heartbeat" not in codes(kube + "health: {cluster_grace: 2.6s}\n")
    # no Kubernetes cluster: no heartbeat, nothing to warn about
    static = BASE + PROBED + "health: {cluster_grace: 1s}\n"
    assert "grace-below-heartbeat" not in codes(static)
    # grace left at its default: the line of the heartbeat setting
    low = BASE + PROBED + KUBE + "kubernetes: {heartbeat_timeout: 5s}\n"
    line, _ = only(low, "grace-below-heartbeat")
    assert line == line_of(low, "heartbeat_timeout")


def test_ttl_much_larger_than_detection() -> None:
    # detection 1s x 2 + 0.5s = 2.5s: the limit is the one-minute floor
    line, message = only(BASE + PROBED + "ttl: 61\n", "ttl-dominates-failover")
    assert line == line_of(BASE + PROBED + "ttl: 61\n", "ttl:")
    assert "61s" in message and "lower ttl to 60s" in message
    assert "ttl-dominates-failover" not in codes(BASE + PROBED + "ttl: 60\n")
    # slow probes (10s x 3 + 5s = 35s): ten times that is the limit
    slow = BASE + PROBED + "health: {interval: 10s, timeout: 5s, fall: 3}\n"
    assert "ttl-dominates-failover" not in codes(slow + "ttl: 350\n")
    assert "ttl-dominates-failover" in codes(slow + "ttl: 351\n")
    # nothing probed at all: no detection time to compare with
    unprobed = PROBED.replace(', probe: {tcp: "192.0.2.1:80"}', "")
    assert "ttl-dominates-failover" not in codes(BASE + unprobed + "ttl: 3600\n")


@pytest.mark.parametrize("key, code", [("fall", "no-fall-hysteresis"),
                                       ("rise", "no-rise-hysteresis")])
def test_fall_or_rise_of_one_flaps(key: str, code: str) -> None:
    text = BASE + PROBED + f"health: {{{key}: 1}}\n"
    line, message = only(text, code)
    assert line == line_of(text, f"{key}: 1")
    assert f"{key} to 2" in message
    assert code not in codes(BASE + PROBED + f"health: {{{key}: 2}}\n")
    assert code not in codes(BASE + PROBED.replace(', probe: {tcp: "192.0.2.1:80"}', "")
                             + f"health: {{{key}: 1}}\n")


def test_nxdomain_when_all_unhealthy() -> None:
    text = BASE + PROBED + "ttl: 45\nhealth:\n  when_all_unhealthy: nxdomain\n"
    line, message = only(text, "nxdomain-when-all-unhealthy")
    assert line == line_of(text, "when_all_unhealthy")
    assert "45s" in message and "serve_all" in message
    assert "nxdomain-when-all-unhealthy" not in codes(
        BASE + PROBED + "health: {when_all_unhealthy: serve_all}\n")


def _reply_size(qname: str, rtype: str, count: int) -> int:
    """Bytes of a real (dnspython) reply without EDNS carrying ``count`` records."""
    query = dns.message.make_query(qname, rtype, use_edns=False)
    reply = dns.message.make_response(query)
    addresses = [f"10.0.0.{i}" if rtype == "A" else f"2001:db8::{i:x}"
                 for i in range(1, count + 1)]
    reply.answer.append(dns.rrset.from_text_list(qname, 30, "IN", rtype, addresses))
    return len(reply.to_wire())


@pytest.mark.parametrize("zone", ["example.com.", "a-rather-long-zone-name.example.org."])
def test_fitting_answers_matches_real_replies(zone: str) -> None:
    config = load_text(BASE.replace("Example.COM", zone))
    qname = f"a.b.{config.federation}.svc.{config.zone}"
    for rtype, size in (("A", 4), ("AAAA", 16)):
        fit = fitting_answers(config, size)
        assert _reply_size(qname, rtype, fit) <= 512
        assert _reply_size(qname, rtype, fit + 1) > 512


def test_max_answers_above_what_fits_in_512_bytes() -> None:
    config = load_text(BASE + PROBED)
    fit_a, fit_aaaa = fitting_answers(config, 4), fitting_answers(config, 16)
    over = BASE + PROBED + f"server: {{max_answers: {fit_a + 1}}}\n"
    line, message = only(over, "max-answers-exceed-512")
    assert line == line_of(over, "max_answers")
    assert f"{fit_a + 1} A records" in message and f"{fit_a} or less" in message
    assert "max-answers-exceed-512" not in codes(
        BASE + PROBED + f"server: {{max_answers: {fit_a}}}\n")
    # IPv6 shards (or Kubernetes ones, whose addresses are not known here): AAAA counts
    v6 = BASE + PROBED.replace("[192.0.2.1]", '[192.0.2.1, "2001:db8::1"]')
    assert "max-answers-exceed-512" in codes(v6 + f"server: {{max_answers: {fit_aaaa + 1}}}\n")
    assert "max-answers-exceed-512" not in codes(v6 + f"server: {{max_answers: {fit_aaaa}}}\n")
    kube = BASE + PROBED + KUBE + f"server: {{max_answers: {fit_aaaa + 1}}}\n"
    assert "max-answers-exceed-512" in codes(kube)


def test_provider_without_change_limit() -> None:
    text = BASE + PROBED + f"providers:\n  - {ETCD}, name: e1}}\n" \
        f"  - {ETCD}, name: e2,\n     max_change_fraction: 1.0}}\n"
    line, message = only(text, "change-limit-disabled")
    assert line == line_of(text, "max_change_fraction")
    assert "e2" in message and "e1" not in message
    assert "change-limit-disabled" not in codes(
        BASE + PROBED + f"providers:\n  - {ETCD}, max_change_fraction: 0.99}}\n")


def test_required_cookies_without_a_shared_secret() -> None:
    text = BASE + PROBED + "server:\n  require_server_cookie: true\n"
    line, message = only(text, "cookie-secret-per-process")
    assert line == line_of(text, "require_server_cookie")
    assert "BADCOOKIE" in message and "cookie_secret" in message
    shared = text + "  cookie_secret: 000102030405060708090a0b0c0d0e0f\n"
    assert "cookie-secret-per-process" not in codes(shared)
    assert "cookie-secret-per-process" not in codes(BASE + PROBED)  # not required: no warning


def test_config_drain_whose_until_has_passed() -> None:
    """A config drain past its ``until`` drains nothing; left in the config it
    reads as if it did. The check runs at ``now`` (the time of the check)."""
    text = BASE + PROBED + (
        "drains:\n"
        "  - {cluster: us, reason: open-ended}\n"
        "  - cluster: us\n"
        "    service: default/web\n"
        "    reason: canary\n"
        "    until: 2020-01-31T06:00:00Z\n")
    config = load_text(text, "t.yaml")
    ends = config.drains[1].until
    assert ends is not None
    assert "expired-config-drain" not in [w.code for w in warnings(config, text, now=ends - 1)]
    [w] = [w for w in warnings(config, text, now=ends + 90) if w.code == "expired-config-drain"]
    assert w.line == line_of(text, "until:")
    assert "us/default/web" in w.message and "2020-01-31T06:00:00Z" in w.message
    assert "remove" in w.message
    # without ``now``: the clock at the check (2020 is long past)
    assert "expired-config-drain" in codes(text)
    assert "expired-config-drain" in CODES


def test_static_shards_that_nothing_probes() -> None:
    text = BASE + """\
clusters:
  - name: us
    zone: us-east1-b
    services:
      - {name: web, namespace: default, addresses: [192.0.2.1], probe: {tcp: "192.0.2.1:80"}}
      - {name: api, namespace: default, addresses: [192.0.2.2]}
    ingresses:
      - {name: shop, namespace: web, hosts: [shop], addresses: [192.0.2.3]}
"""
    line, message = only(text, "unprobed-static-shard")
    assert line == line_of(text, "name: api")
    assert "default/api" in message and "ingress:web/shop" in message
    assert "default/web" not in message
    # default_probe covers shards with an address, not hostname-only ones
    covered = text.replace("zone: us-east1-b\n", "zone: us-east1-b\n    default_probe: tcp\n")
    assert "unprobed-static-shard" not in codes(covered)
    elb = covered.replace("addresses: [192.0.2.2]", "hostnames: [lb.example.net]")
    line, message = only(elb, "unprobed-static-shard")
    assert "default/api" in message and "shop" not in message
    assert line == line_of(elb, "name: api")


def test_without_the_text_warnings_have_no_line() -> None:
    text = BASE + PROBED + "health: {fall: 1}\n"
    [w] = warnings(load_text(text))
    assert (w.code, w.line) == ("no-fall-hysteresis", None)
    assert w.log_fields().startswith("code=no-fall-hysteresis line=- message='health.fall")


def test_advice_is_pure_and_imports_no_later_stage() -> None:
    probe = ("import sys, config.advice; "
             "print(sorted({m.split('.')[0] for m in sys.modules} & "
             "{'healthwatch', 'dnsserver', 'providers'}))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         timeout=60, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"


# -- per-cluster kubernetes blocks -------------------------------------------------------------

FAR = """\
  - name: far
    source: kubernetes
    region: us-east1
    kubeconfig: /kc
    kubernetes:
{knobs}"""


def far(knobs: str) -> str:
    """A second Kubernetes cluster ``far`` (after ``k8s``) with its own block."""
    return FAR.format(knobs=knobs)


def test_lost_api_row_shows_the_slowest_cluster_and_names_it() -> None:
    top = ("health: {cluster_grace: 4s}\n"
           "kubernetes: {heartbeat_interval: 1s, heartbeat_timeout: 2s}\n")
    text = BASE + top + PROBED + KUBE + far("      heartbeat_timeout: 10s\n"
                                            "      heartbeat_interval: 3s\n")
    _, api = failover_budget(load_text(text)).failover
    assert api.detection == 3 + 10  # far's heartbeat_interval + its heartbeat_timeout
    assert api.failure == "Kubernetes API lost, slowest: far"
    assert api.applies_to == ("k8s", "far")  # a bound for both
    assert api.detection_formula == ("heartbeat_interval 3s + max(cluster_grace 4s, "
                                     "heartbeat_timeout 10s)")
    # an override that leaves the heartbeat alone changes nothing in the row
    same = BASE + top + PROBED + KUBE + far("      list_limit: 50\n")
    plain = BASE + top + PROBED + KUBE + far("      {}\n")
    assert failover_budget(load_text(same)) == failover_budget(load_text(plain))
    _, api = failover_budget(load_text(same)).failover
    assert api.failure == "Kubernetes API lost" and api.detection == 1 + 4


def test_a_faster_override_does_not_lower_the_lost_api_row() -> None:
    text = (BASE + "kubernetes: {heartbeat_interval: 5s}\n" + PROBED + KUBE
            + far("      heartbeat_interval: 1s\n"))
    _, api = failover_budget(load_text(text)).failover
    assert api.detection == 5 + 3  # k8s: the top-level 5s + the default grace 3s
    assert api.failure == "Kubernetes API lost, slowest: k8s"


def test_grace_below_heartbeat_names_each_offending_cluster_at_its_override() -> None:
    base = BASE + "kubernetes: {heartbeat_timeout: 2s, backoff_base: 500ms}\n"
    ok = base + "health: {cluster_grace: 3s}\n" + PROBED + KUBE
    assert "grace-below-heartbeat" not in codes(ok + far("      list_limit: 50\n"))
    slow = ok + far("      heartbeat_timeout: 5s\n")
    line, message = only(slow, "grace-below-heartbeat")
    assert line == line_of(slow, "heartbeat_timeout: 5s")
    assert "cluster far" in message and "k8s" not in message
    assert "heartbeat_timeout 5s + backoff_base 0.5s = 5.5s" in message
    assert "cluster_grace above 5.5s" in message
    # both below: the top-level warning as without overrides, then far's
    alone = base + "health: {cluster_grace: 2.5s}\n" + PROBED + KUBE
    both = alone + far("      backoff_base: 4s\n")
    found = [w for w in warnings(load_text(both, "t.yaml"), both)
             if w.code == "grace-below-heartbeat"]
    [before] = [w for w in warnings(load_text(alone, "t.yaml"), alone)
                if w.code == "grace-below-heartbeat"]
    assert [w.line for w in found] == [before.line, line_of(both, "backoff_base: 4s")]
    assert found[0].message == before.message  # names k8s only, as before
    assert "cluster far" in found[1].message and "= 6s" in found[1].message
