"""Config texts for the end-to-end tests (ports 0: the OS picks, logs tell)."""

from __future__ import annotations

GLOBAL = "nginx.default.myfed.svc.example.com."

# us-east1 is ~7,000 km from europe-west1 and ~13,000 km from asia-east1, so a
# drained or failed us cluster's clients go to Europe (by distance, not name).
STATIC = """\
zone: example.com.
federation: myfed
ttl: 5
nameservers: {{ns1.example.com.: [127.0.0.1]}}
listen: {{dns: ["127.0.0.1:0"], http: "127.0.0.1:0"}}
{extra}
regions:
  us-east1: {{location: [33.8, -84.4], zones: [us-east1-b, us-east1-c]}}
  europe-west1: {{location: [50.4, 3.8], zones: [europe-west1-b]}}
  asia-east1: {{location: [24.0, 120.5], zones: [asia-east1-a]}}
clusters:
  - name: us
    region: us-east1
    zone: us-east1-b
    source: static
    networks: [127.0.1.0/24]
    services:
      - {{name: nginx, namespace: default, addresses: [{us_address}], ready: 2}}
  - name: eu
    region: europe-west1
    zone: europe-west1-b
    source: static
    networks: [127.0.2.0/24]
    services:
      - {{name: nginx, namespace: default, addresses: [192.0.2.20], ready: 2}}
  - name: asia
    region: asia-east1
    zone: asia-east1-a
    source: static
    networks: [127.0.3.0/24]
    services:
      - {{name: nginx, namespace: default, addresses: [192.0.2.30], ready: 2}}
records:
  - {{name: eu.nginx, type: CNAME, value: nginx.default.myfed.svc.europe-west1.example.com.}}
  - {{name: www, type: A, value: 192.0.2.80}}
"""


def static_config(*, us_address: str = "192.0.2.10", extra: str = "") -> str:
    return STATIC.format(us_address=us_address, extra=extra)


# Three different mistakes on lines 7, 10 and 14.
THREE_MISTAKES = """\
zone: example.com.
federation: myfed
ttl: 30
listen: {dns: ["127.0.0.1:0"], http: "127.0.0.1:0"}
regions:
  us-east1: {location: [33.8, -84.4], zones: [us-east1-b]}
health: {interval: 2 parsecs}
clusters:
  - name: us
    region: us-west9
    zone: us-east1-b
    services:
      - {name: nginx, namespace: default, addresses: [192.0.2.10]}
colour: blue
"""
MISTAKE_LINES = (7, 10, 14)
