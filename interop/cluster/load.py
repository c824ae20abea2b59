"""Load through the balancer for the cluster test: machine threads issue client_credentials
tokens and introspect each one; a people thread signs in through the whole browser flow. Every
connection leaves from SOURCE (so the nodes' audit lines can be checked for it). Runs until STOP
(a file) appears, then prints one JSON line: counts and failures per kind.

usage: load.py HOST PORT CA SOURCE STOP MACHINE_JSON OBSERVER_JSON PUBLIC_CLIENT EMAIL PASSWORD
"""
import http.client
import json
import os
import re
import ssl
import sys
import threading
import time
import urllib.parse

HOST, PORT, CA, SOURCE, STOP = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
MACHINE, OBSERVER = json.loads(sys.argv[6]), json.loads(sys.argv[7])
PUBLIC, EMAIL, PASSWORD = sys.argv[8], sys.argv[9], sys.argv[10]
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
CSRF = re.compile(r'name="csrf" value="([^"]+)"')
VERIFIER = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
REDIRECT = "http://127.0.0.1/cb"

context = ssl.create_default_context(cafile=CA)
lock = threading.Lock()
counts = {}
failures = {}
samples = []


def count(kind, ok, why=""):
    with lock:
        table = counts if ok else failures
        table[kind] = table.get(kind, 0) + 1
        if not ok and len(samples) < 20:
            samples.append(f"{kind}: {why}")


def connect():
    return http.client.HTTPSConnection(HOST, PORT, context=context, timeout=20, source_address=(SOURCE, 0))


def call(conn, method, path, body=None, headers=None):
    conn.request(method, path, body, headers or {})
    r = conn.getresponse()
    return r, r.read()


def machine():
    conn = connect()
    form = urllib.parse.urlencode({"grant_type": "client_credentials", "client_id": MACHINE["client_id"],
                                   "client_secret": MACHINE["client_secret"], "scope": "openid"})
    while not os.path.exists(STOP):
        try:
            r, body = call(conn, "POST", "/ims/token/v3", form, FORM)
            if r.status != 200:
                count("token", False, f"HTTP {r.status} {body[:120]!r}")
                continue
            count("token", True)
            token = json.loads(body)["access_token"]
            ask = urllib.parse.urlencode({"token": token, "client_id": OBSERVER["client_id"],
                                          "client_secret": OBSERVER["client_secret"]})
            r, body = call(conn, "POST", "/ims/introspect/v1", ask, FORM)
            active = r.status == 200 and json.loads(body).get("active") is True
            count("introspect", active, f"HTTP {r.status} {body[:120]!r}")
        except Exception as e:  # noqa: BLE001 - a failure to report, then a new connection
            count("connection", False, repr(e))
            conn.close()
            conn = connect()


def people():
    conn = connect()
    authorize = "/ims/authorize/v2?" + urllib.parse.urlencode({
        "client_id": PUBLIC, "redirect_uri": REDIRECT, "response_type": "code", "scope": "openid email",
        "state": "s", "code_challenge": CHALLENGE, "code_challenge_method": "S256", "prompt": "login"})
    while not os.path.exists(STOP):
        try:
            r, _ = call(conn, "GET", authorize)
            page = r.getheader("Location")
            browser = r.getheader("Set-Cookie").split(";")[0]
            r, body = call(conn, "GET", page, headers={"Cookie": browser})
            csrf = CSRF.search(body.decode()).group(1)
            call(conn, "POST", page, urllib.parse.urlencode({"csrf": csrf, "email": EMAIL}),
                 {**FORM, "Cookie": browser})
            r, _ = call(conn, "POST", page, urllib.parse.urlencode({"csrf": csrf, "password": PASSWORD}),
                        {**FORM, "Cookie": browser})
            code = urllib.parse.parse_qs(urllib.parse.urlparse(r.getheader("Location")).query)["code"][0]
            body = urllib.parse.urlencode({"grant_type": "authorization_code", "client_id": PUBLIC, "code": code,
                                           "redirect_uri": REDIRECT, "code_verifier": VERIFIER})
            r, answer = call(conn, "POST", "/ims/token/v3", body, FORM)
            ok = r.status == 200 and "id_token" in json.loads(answer)
            count("signin", ok, f"HTTP {r.status} {answer[:120]!r}")
        except Exception as e:  # noqa: BLE001 - a failure to report, then a new connection
            count("signin", False, repr(e))
            conn.close()
            conn = connect()


threads = [threading.Thread(target=machine) for _ in range(4)] + [threading.Thread(target=people)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(json.dumps({"counts": counts, "failures": failures, "samples": samples}))
