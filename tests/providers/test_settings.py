"""Provider settings from the YAML reach the backends that read them."""

from __future__ import annotations

from config.loader import load_text
from providers.clouddns import CloudDnsBackend
from providers.factory import make_backend
from providers.route53 import Route53Backend

CONFIG = """\
zone: example.com
federation: f
regions: {r1: {location: [1, 2], zones: [z1]}}
providers:
  - {type: route53, hosted_zone_id: Z1, requests_per_second: 2, attempts: 8, backoff: 250ms,
     marker_ttl: 60}
  - {type: clouddns, project: p, managed_zone: fed, attempts: 3, backoff: 2s}
  - {type: route53, name: plain, hosted_zone_id: Z2}
"""


def test_retry_rate_and_marker_settings_reach_the_backends() -> None:
    r53, gcd, plain = (make_backend(p) for p in load_text(CONFIG).providers)
    assert isinstance(r53, Route53Backend) and isinstance(gcd, CloudDnsBackend)
    assert (r53.attempts, r53.backoff, r53.marker_ttl) == (8, 0.25, 60)
    assert [r53._limiter.delay(100.0) for _ in range(3)] == [0.0, 0.5, 1.0]  # 2 a second
    assert (gcd.attempts, gcd.backoff, gcd.marker_ttl) == (3, 2.0, 300)
    assert isinstance(plain, Route53Backend)
    assert (plain.attempts, plain.backoff, plain.marker_ttl) == (5, 0.5, 300)
    assert [round(plain._limiter.delay(100.0), 9) for _ in range(2)] == [0.0, 0.2]  # 5 a second
