"""Discovers the agents of a zone with the DNS-AID reference client (PyPI `dns-aid`), from
one of our nodes' DNS doors, and prints them as `AGENT <json>` lines.

dns-aid has no nameserver option: every lookup builds a fresh dns.asyncresolver.Resolver(),
which reads /etc/resolv.conf. So the resolver class is replaced by one pinned to our node
before any query. enrich_endpoints=False keeps it from fetching agent cards over HTTPS
(which would look host names up with the system resolver).

usage: python dns_aid_discover.py --server 127.0.0.1 --port 5353 --domain finance.acme
"""

import argparse
import asyncio
import json

import dns.asyncresolver


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--server", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--domain", required=True)
    args = parser.parse_args()

    class PinnedResolver(dns.asyncresolver.Resolver):
        def __init__(self, filename="/etc/resolv.conf", configure=False):
            super().__init__(filename=filename, configure=False)
            self.nameservers = [args.server]
            self.port = args.port

    dns.asyncresolver.Resolver = PinnedResolver

    import dns_aid  # after pinning, so every resolver it builds asks our node

    async def discover() -> None:
        result = await dns_aid.discover(args.domain, enrich_endpoints=False)
        for agent in result.agents:
            # dns-aid logs to stdout too: mark our lines.
            print(
                "AGENT "
                + json.dumps(
                    {
                        "name": agent.name,
                        "protocol": agent.protocol.value,
                        "target_host": agent.target_host,
                        "port": agent.port,
                        "ipv4_hint": agent.ipv4_hint,
                        "endpoint_url": agent.endpoint_url,
                        "capabilities": agent.capabilities,
                    }
                )
            )

    asyncio.run(discover())


if __name__ == "__main__":
    main()
