#!/usr/bin/env python3
"""Asks several DNS servers the same questions with dig and compares their answers to the first.

    python3 bench/dns_compare.py --server nsd=127.0.0.1:5301 --server aop=127.0.0.1:5302 \
        --queries checks.txt [--variant edns --variant noedns] [--out report.txt]

`checks.txt` has one `KIND QNAME QTYPE` a line (KIND is a free label such as `srv` or
`nxdomain`). For every query and variant (`edns`: dig's default EDNS(0); `noedns`: plain DNS, as
dnsperf sends), each server is asked once over UDP with `+norec +nocookie`; compared are the
rcode, the header flags, the ANSWER, AUTHORITY and ADDITIONAL sections as sets (owner names
lowercased; TTLs included, so the RFC 2308 SOA TTL of a negative answer counts). The first
server is the reference. Prints one line per query and variant (`same`, `same~` when only
optional data differs: flags other than AA, NS in AUTHORITY, ADDITIONAL; `DIFF` when the
rcode, AA, the ANSWER set or the SOA in AUTHORITY differs), then the differences in full,
then a tally per server. Exits 0 whatever the differences (the caller reads the tally).
Python 3.11, stdlib only; needs dig.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from dataclasses import dataclass, field

VARIANTS = {"edns": [], "noedns": ["+noedns"]}


@dataclass
class Reply:
    status: str = "?"
    flags: tuple[str, ...] = ()
    sections: dict[str, tuple[str, ...]] = field(default_factory=dict)
    edns_udp: str = "-"
    error: str = ""

    def key(self) -> tuple:
        return (self.status, self.flags, tuple(sorted(self.sections.items())))

    def summary(self) -> str:
        if self.error:
            return f"error: {self.error}"
        parts = [self.status, "+".join(f for f in self.flags if f != "qr") or "-"]
        answers = self.sections.get("ANSWER", ())
        parts.append(f"an={len(answers)}")
        soa = [r for r in self.sections.get("AUTHORITY", ()) if r.split()[2:3] == ["SOA"]]
        if soa and not answers:
            parts.append(f"soa-ttl={soa[0].split()[1]}")
        others = [r for r in self.sections.get("AUTHORITY", ()) if r.split()[2:3] != ["SOA"]]
        if others:
            parts.append(f"ns={len(others)}")
        if self.sections.get("ADDITIONAL"):
            parts.append(f"ad={len(self.sections['ADDITIONAL'])}")
        return " ".join(parts)


def normalize(line: str) -> str:
    """`owner ttl class type rdata` with the owner lowercased and the fields single-spaced."""
    fields = re.split(r"\s+", line.strip(), maxsplit=4)
    if len(fields) < 4:
        return line.strip()
    owner, ttl, klass, rtype = fields[:4]
    rdata = fields[4] if len(fields) > 4 else ""
    if rtype in ("SRV", "SVCB", "NS", "SOA", "CNAME", "MX", "HTTPS"):
        rdata = rdata.lower()
    return f"{owner.lower()} {ttl} {rtype} {rdata}"


def ask(addr: str, qname: str, qtype: str, extra: list[str]) -> Reply:
    host, port = addr.rsplit(":", 1)
    command = [
        "dig", f"@{host}", "-p", port, "+norec", "+nocookie", "+time=2", "+tries=2",
        "+noall", "+comments", "+answer", "+authority", "+additional", *extra, qname, qtype,
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    reply = Reply()
    if result.returncode != 0:
        reply.error = (result.stdout + result.stderr).strip().splitlines()[-1:] or ["dig failed"]
        reply.error = reply.error[0]
        return reply
    section = None
    sections: dict[str, list[str]] = {}
    for line in result.stdout.splitlines():
        if m := re.search(r"status: (\w+)", line):
            reply.status = m.group(1)
        if m := re.match(r";; flags:([^;]*);", line):
            reply.flags = tuple(sorted(m.group(1).split()))
        if m := re.search(r"; EDNS: .*udp: (\d+)", line):
            reply.edns_udp = m.group(1)
        if m := re.match(r";; (ANSWER|AUTHORITY|ADDITIONAL) SECTION:", line):
            section = m.group(1)
            continue
        if not line.strip():
            section = None
            continue
        if section and not line.startswith(";"):
            sections.setdefault(section, []).append(normalize(line))
    reply.sections = {name: tuple(sorted(records)) for name, records in sections.items()}
    if reply.status == "?":
        reply.error = "no reply parsed"
    return reply


def differences(reference: Reply, other: Reply) -> list[tuple[bool, str]]:
    """(core, text) per difference. Core: rcode, the AA flag, the ANSWER set, and the SOA (TTL
    included) in AUTHORITY; the rest (other flags, NS in AUTHORITY, ADDITIONAL) is optional
    data that servers may differ on without a client noticing."""
    out = []
    if other.error or reference.error:
        return [(True, f"error: reference {reference.error or 'ok'}, this {other.error or 'ok'}")]
    if reference.status != other.status:
        out.append((True, f"rcode {other.status} (reference {reference.status})"))
    if reference.flags != other.flags:
        core = ("aa" in reference.flags) != ("aa" in other.flags)
        out.append((core, f"flags {' '.join(other.flags)} (reference {' '.join(reference.flags)})"))
    for name in ("ANSWER", "AUTHORITY", "ADDITIONAL"):
        ours, theirs = set(other.sections.get(name, ())), set(reference.sections.get(name, ()))
        for label, records in (("missing", theirs - ours), ("extra  ", ours - theirs)):
            for record in sorted(records):
                core = name == "ANSWER" or (name == "AUTHORITY" and record.split()[2:3] == ["SOA"])
                out.append((core, f"{name}: {label}  {record}"))
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", action="append", required=True, help="NAME=HOST:PORT; the first is the reference")
    parser.add_argument("--queries", required=True, help="file of `KIND QNAME QTYPE` lines")
    parser.add_argument("--variant", action="append", choices=sorted(VARIANTS), help="default: both")
    args = parser.parse_args(argv)
    servers = [tuple(s.split("=", 1)) for s in args.server]
    variants = args.variant or ["edns", "noedns"]
    queries = []
    with open(args.queries, encoding="utf-8") as lines:
        for line in lines:
            if line.strip() and not line.startswith("#"):
                queries.append(line.split())

    ref_name = servers[0][0]
    tally = {name: [0, 0, 0] for name, _ in servers[1:]}  # same, optional data only, core
    details = []
    width = max(len(f"{q[1]} {q[2]}") for q in queries) + 1
    header = f"{'kind':10} {'query':{width}} {'var':6} {ref_name + ' (reference)':34}"
    for name, _ in servers[1:]:
        header += f" {name:34}"
    print(header)
    print("-" * len(header))
    for kind, qname, qtype in queries:
        for variant in variants:
            replies = [(name, ask(addr, qname, qtype, VARIANTS[variant])) for name, addr in servers]
            reference = replies[0][1]
            line = f"{kind:10} {qname + ' ' + qtype:{width}} {variant:6} {reference.summary():34}"
            for name, reply in replies[1:]:
                diff = differences(reference, reply)
                core = any(c for c, _ in diff)
                tally[name][2 if core else 1 if diff else 0] += 1
                mark = "DIFF" if core else "same~" if diff else "same"
                line += f" {mark + ': ' + reply.summary():34}"
                if diff:
                    details.append((f"{name} vs {ref_name}: {qname} {qtype} ({variant})", diff))
            print(line)
    print()
    if details:
        print("differences:")
        for title, diff in details:
            print(f"  {title}")
            for core, item in diff:
                print(f"    {'*' if core else ' '} {item}")
        print("  (* a core difference: rcode, AA, ANSWER, or the SOA in AUTHORITY with its TTL)")
        print()
    for name, (same, optional, core) in tally.items():
        print(f"agreement with {ref_name}: {name}: {same} same, {optional} same but for optional "
              f"data (other flags, NS/ADDITIONAL), {core} different (core)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
