"""Password sign-ins through the real flow, as fast as they go: authorization request, sign-in
page, email, password, code exchange (six requests; one Argon2id verification). Each thread keeps
one connection. Prints `RESULT signins=N secs=S rate=R failures=F`."""
import http.client
import json
import re
import sys
import threading
import time
import urllib.parse

HOST, PORT = sys.argv[1], int(sys.argv[2])
CLIENT, EMAIL, PASSWORD = sys.argv[3], sys.argv[4], sys.argv[5]
SECS, THREADS = float(sys.argv[6]), int(sys.argv[7])
REDIRECT = "http://127.0.0.1/cb"
VERIFIER = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
CSRF = re.compile(r'name="csrf" value="([^"]+)"')
AUTHORIZE = "/ims/authorize/v2?" + urllib.parse.urlencode({
    "client_id": CLIENT, "redirect_uri": REDIRECT, "response_type": "code", "scope": "openid email",
    "state": "s", "code_challenge": CHALLENGE, "code_challenge_method": "S256", "prompt": "login",
})
FORM = {"Content-Type": "application/x-www-form-urlencoded"}

done, failed = [0], [0]
lock = threading.Lock()


def one(conn):
    conn.request("GET", AUTHORIZE)
    r = conn.getresponse()
    r.read()
    page = r.getheader("Location")
    browser = r.getheader("Set-Cookie").split(";")[0]
    conn.request("GET", page, headers={"Cookie": browser})
    r = conn.getresponse()
    csrf = CSRF.search(r.read().decode()).group(1)
    conn.request("POST", page, urllib.parse.urlencode({"csrf": csrf, "email": EMAIL}), {**FORM, "Cookie": browser})
    r = conn.getresponse()
    r.read()
    conn.request("POST", page, urllib.parse.urlencode({"csrf": csrf, "password": PASSWORD}), {**FORM, "Cookie": browser})
    r = conn.getresponse()
    r.read()
    code = urllib.parse.parse_qs(urllib.parse.urlparse(r.getheader("Location")).query)["code"][0]
    body = urllib.parse.urlencode({"grant_type": "authorization_code", "client_id": CLIENT, "code": code,
                                   "redirect_uri": REDIRECT, "code_verifier": VERIFIER})
    conn.request("POST", "/ims/token/v3", body, FORM)
    r = conn.getresponse()
    assert r.status == 200 and "id_token" in json.loads(r.read())


def worker(deadline):
    conn = http.client.HTTPConnection(HOST, PORT)
    while time.monotonic() < deadline:
        try:
            one(conn)
            with lock:
                done[0] += 1
        except Exception:  # noqa: BLE001 - counted and reported
            with lock:
                failed[0] += 1
            conn.close()
            conn = http.client.HTTPConnection(HOST, PORT)


start = time.monotonic()
threads = [threading.Thread(target=worker, args=(start + SECS,)) for _ in range(THREADS)]
for t in threads:
    t.start()
for t in threads:
    t.join()
secs = time.monotonic() - start
print(f"RESULT signins={done[0]} secs={secs:.1f} rate={done[0] / secs:.1f} failures={failed[0]}")
