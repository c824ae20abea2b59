"""Disables a client and measures, on each node directly, how long until it is refused there.
Before: the client gets a token on every node. Then DISABLE (a command) runs; from the moment it
returns, each node is asked every 20 ms. Prints one JSON line: milliseconds per node.

usage: refused.py CLIENT_JSON SOURCE DISABLE_COMMAND... -- PORT [PORT ...]
"""
import http.client
import json
import subprocess
import sys
import time
import urllib.parse

args = sys.argv[1:]
client, source = json.loads(args[0]), args[1]
split = args.index("--")
disable, ports = args[2:split], [int(p) for p in args[split + 1:]]
form = urllib.parse.urlencode({"grant_type": "client_credentials", "client_id": client["client_id"],
                               "client_secret": client["client_secret"], "scope": "openid"})


def status(port):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5, source_address=(source, 0))
    try:
        conn.request("POST", "/ims/token/v3", form, {"Content-Type": "application/x-www-form-urlencoded"})
        return conn.getresponse().status
    finally:
        conn.close()


before = {p: status(p) for p in ports}
assert all(s == 200 for s in before.values()), f"the client does not get tokens everywhere first: {before}"
subprocess.run(disable, check=True, stdout=subprocess.DEVNULL)
start = time.monotonic()
seen = {}
while len(seen) < len(ports) and time.monotonic() - start < 30:
    for p in ports:
        if p not in seen and status(p) != 200:
            seen[p] = round((time.monotonic() - start) * 1000)
    time.sleep(0.02)
print(json.dumps({"refused_after_ms": {str(p): seen.get(p) for p in ports}}))
