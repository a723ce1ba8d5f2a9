"""Write the seed corpus (tests/fuzz/corpus/): ``python -m tests.fuzz.make_corpus``.

Seeds are valid queries of many shapes (every zone name and common type, with
and without EDNS, DO, ECS v4/v6, cookies, unknown options, odd payload sizes,
upper case, compressed questions) and the malformed shapes of the adversarial
table. File names are the SHA-1 of the content, as libFuzzer names them, so
re-running only adds seeds. Crash regressions live in tests/fuzz/crashes/.
"""

from __future__ import annotations

import hashlib
import struct
import sys
from pathlib import Path

import dns.edns
import dns.flags
import dns.message
import dns.opcode

from tests.dnsserver import zonefixture as zf

CORPUS = Path(__file__).with_name("corpus")

NAMES = [zf.ZONE, f"www.{zf.ZONE}", zf.GLOBAL, zf.US_AZ, zf.EU_AZ, zf.EU_REGION, zf.ASIA_REGION,
         f"big.{zf.ZONE}", f"alias.{zf.ZONE}", f"loop1.{zf.ZONE}", f"ent.{zf.ZONE}",
         f"nope.{zf.ZONE}", f"same.{zf.ZONE}", f"outside.{zf.ZONE}", "www.example.net.", ".",
         f"WwW.{zf.ZONE.upper()}", "version.bind.", "id.server."]
TYPES = ["A", "AAAA", "ANY", "SOA", "NS", "MX", "TXT", "CNAME", "HTTPS", "SRV", "CAA", "AXFR",
         "IXFR", "TYPE1000", "OPT"]


def header(qid: int = 0x1234, flags: int = 0x0100, qd: int = 1, an: int = 0, ns: int = 0,
           ar: int = 0) -> bytes:
    return struct.pack("!HHHHHH", qid, flags, qd, an, ns, ar)


QNAME = b"\x03www\x07example\x03com\x00"
QUESTION = QNAME + b"\x00\x01\x00\x01"
OPT = b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00"


def opt_with(options: bytes, payload: int = 1232, ttl: int = 0) -> bytes:
    return (b"\x00\x00\x29" + struct.pack("!HIH", payload, ttl, len(options)) + options)


def ecs(family: int, source: int, addr: bytes, scope: int = 0) -> bytes:
    body = struct.pack("!HBB", family, source, scope) + addr
    return struct.pack("!HH", 8, len(body)) + body


def valid() -> list[bytes]:
    out: list[bytes] = []
    for i, name in enumerate(NAMES):
        for rtype in TYPES:
            try:
                q = dns.message.make_query(name, rtype, id=i)
            except Exception:
                continue
            out.append(q.to_wire())
        for payload in (512, 1232, 4096):
            out.append(dns.message.make_query(name, "A", use_edns=0, payload=payload,
                                              want_dnssec=payload == 4096).to_wire())
    for opts in ([dns.edns.ECSOption("198.51.100.0", 24)], [dns.edns.ECSOption("2001:db8:1::", 48)],
                 [dns.edns.ECSOption("10.1.2.0", 24)], [dns.edns.ECSOption("0.0.0.0", 0)],
                 [dns.edns.GenericOption(10, b"\x01" * 8)], [dns.edns.GenericOption(100, b"x")],
                 [dns.edns.ECSOption("::ffff:10.1.2.3", 128)],
                 [dns.edns.ECSOption("::ffff:203.0.113.0", 120)],
                 [dns.edns.ECSOption("::ffff:0.0.0.0", 96)]):
        for name in (zf.GLOBAL, f"www.{zf.ZONE}", f"big.{zf.ZONE}"):
            out.append(dns.message.make_query(name, "A", use_edns=0, options=opts).to_wire())
    for opcode in (dns.opcode.NOTIFY, dns.opcode.IQUERY, dns.opcode.STATUS, dns.opcode.UPDATE):
        q = dns.message.make_query(zf.ZONE, "SOA")
        q.set_opcode(opcode)
        out.append(q.to_wire())
    for rdclass in ("CH", "ANY", "HS"):
        out.append(dns.message.make_query("version.bind.", "TXT", rdclass=rdclass).to_wire())
    q = dns.message.make_query(f"www.{zf.ZONE}", "A")
    q.flags |= dns.flags.CD | dns.flags.AD
    out.append(q.to_wire())
    out.append(header(ar=1) + QUESTION + opt_with(b"", 1232, 1 << 16))  # EDNS version 1
    return out


def malformed() -> list[bytes]:
    return [
        b"", b"\x12\x34\x01\x00\x00", header(qd=0), header(qd=2) + QUESTION + QUESTION,
        header(qd=65535) + QUESTION, header(flags=0x8100) + QUESTION,
        header() + b"\xc0\x0c\x00\x01\x00\x01",
        header() + b"\x03www\xc0\x14\x00\x01\x00\x01\x03com\x00",
        header(qd=2) + QUESTION + b"\x03ftp\xc0\x10\x00\x01\x00\x01",  # valid back pointer
        header() + b"\x40" + b"a" * 64 + b"\x00\x00\x01\x00\x01",
        header() + (b"\x3f" + b"a" * 63) * 4 + b"\x00\x00\x01\x00\x01",
        header() + QNAME + b"\x00",
        header(ar=2) + QUESTION + OPT + OPT,
        header(ar=1) + QUESTION + b"\x01a\x00\x00\x29\x04\xd0" + bytes(6),
        header(an=1) + QUESTION + QNAME + b"\x00\x01\x00\x01" + bytes(4)
        + b"\x00\x04\x01\x02\x03\x04",
        header(ns=1) + QUESTION + b"\xc0\x0c\x00\x06\x00\x01" + bytes(4) + b"\x00\x00",
        header() + QUESTION + b"junk",
        header(ar=1) + QUESTION + OPT[:-2] + b"\x00\x10",
        header(ar=1) + QUESTION + opt_with(ecs(3, 24, b"\x01\x02\x03")),
        header(ar=1) + QUESTION + opt_with(ecs(1, 33, b"\x01\x02\x03\x04\x05")),
        header(ar=1) + QUESTION + opt_with(ecs(1, 20, b"\xc6\x33\x6f")),
        header(ar=1) + QUESTION + opt_with(ecs(1, 24, b"\xc6\x33")),
        header(ar=1) + QUESTION + opt_with(ecs(2, 56, b"\x20\x01\x0d\xb8\x00\x01\x00")),
        header(ar=1) + QUESTION + opt_with(ecs(1, 24, b"\xc6\x33\x64") * 2),
        header(ar=1) + QUESTION + opt_with(b"\x00\x08\x00"),
        header(ar=1) + QUESTION + opt_with(b"", 0), header(ar=1) + QUESTION + opt_with(b"", 65535),
        header(ar=1) + QUESTION + opt_with(b"", 511),
        header(an=1, ar=1) + QUESTION + OPT + OPT,  # OPT in the answer section
        header() + QNAME + b"\x00\x29\x00\x01",
        header(flags=0x7800) + QUESTION, header(flags=0x0800, qd=0),
        header(flags=0x2000, qd=1, ns=1) + QUESTION + QUESTION + bytes(6),
        header() + b"\x80" + QUESTION, header() + b"\xc0",
        # compression pointers into the header (followed, as dnspython does)
        header() + b"\xc0\x00\x00\x01\x00\x01", header(ar=1) + QUESTION + b"\xc0\x06" + OPT[1:],
        # opcodes we do not implement, with an OPT record (NOTIMP carries one)
        header(flags=0x7800, ar=1) + QUESTION + OPT, header(flags=0x7800, qd=0, ar=1) + OPT,
        header(flags=0x2800, ar=1) + QUESTION + opt_with(b"", 1232, 1 << 16),  # EDNS 1
    ]


def main() -> int:
    CORPUS.mkdir(exist_ok=True)
    added = 0
    for seed in valid() + malformed():
        path = CORPUS / hashlib.sha1(seed).hexdigest()
        if not path.exists():
            path.write_bytes(seed)
            added += 1
    print(f"corpus={CORPUS} added={added} total={len(list(CORPUS.iterdir()))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
