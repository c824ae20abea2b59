#!/usr/bin/env python3
"""The load of `bench/migration/zero-downtime`: what an instance's users do while the end-user
phase of a migration runs, recorded call by call, then judged.

  setup   as the instance's admin (SOAP), sets known passwords for the technical operators and
          for a sample of people spread over the population, and gives each of those people an
          IMS account (`ims user create`), as in an organisation whose people already have one.
          Writes the secrets file the run reads.
  run     loads the instance until a stop file appears:
            integrations: each technical operator, on several threads, signs in with its
              password (SOAP Logon), calls GetServerTime and a query, signs off, again and again;
              one more thread per operator keeps one session for the whole run. Every call must
              succeed within the timeout: any HTTP error, SOAP fault or timeout is a failure.
            people: each sampled person signs in to the instance console as a person does:
              with the password first, and when that is refused, with "Connect with IMS" (the
              OIDC code flow through the IMS sign-in form, back to /console/ims/callback).
          Then reads the instance's audit log for the moment each person was moved, and judges:
          zero failed integration calls; each person signed in natively until moved and
          through the IMS after; a sign-in attempt that failed both ways counts only inside that
          person's window (from the first refused native attempt to the first IMS success).
          Prints the figures, writes them as JSON, exits 1 on any failure outside a window.

Standard library only (http.client, threading, xml.etree): it runs wherever python3 does.
"""
import argparse
import concurrent.futures
import http.client
import json
import os
import random
import re
import secrets
import subprocess
import sys
import threading
import time
import urllib.parse
import xml.etree.ElementTree as ET

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
INTEGRATIONS = ["crm-sync", "web-forms", "bi-export"]


def now_ms():
    return int(time.time() * 1000)


class Failure(Exception):
    """A call that did not do what it should (status, fault or content)."""


class Browser:
    """A keep-alive connection per origin and the cookies a browser would keep (per origin; the
    services on loopback differ by port). Redirects are not followed: each hop is checked."""

    def __init__(self, timeout):
        self.timeout = timeout
        self.conns = {}
        self.cookies = {}

    def close(self):
        for c in self.conns.values():
            c.close()
        self.conns.clear()

    def forget_cookies(self):
        self.cookies.clear()

    def request(self, method, url, body=None, headers=None):
        u = urllib.parse.urlsplit(url)
        origin = u.netloc
        path = u.path + (("?" + u.query) if u.query else "")
        h = {"User-Agent": "zero-downtime-load/1"}
        jar = self.cookies.setdefault(origin, {})
        if jar:
            h["Cookie"] = "; ".join(f"{k}={v}" for k, v in jar.items())
        if headers:
            h.update(headers)
        if isinstance(body, str):
            body = body.encode()
        conn = self.conns.get(origin)
        if conn is None:
            conn = http.client.HTTPConnection(u.hostname, u.port, timeout=self.timeout)
            self.conns[origin] = conn
        try:
            conn.request(method, path, body=body, headers=h)
            resp = conn.getresponse()
            data = resp.read()
        except BaseException:
            conn.close()
            self.conns.pop(origin, None)
            raise
        for line in resp.headers.get_all("Set-Cookie") or []:
            first, _, attrs = line.partition(";")
            name, _, value = first.strip().partition("=")
            if value == "" or re.search(r"(?i)max-age=0\b", attrs):
                jar.pop(name, None)
            else:
                jar[name] = value
        if resp.getheader("Connection", "").lower() == "close":
            conn.close()
            self.conns.pop(origin, None)
        return resp.status, resp, data.decode("utf-8", "replace")

    def follow(self, base, location):
        return urllib.parse.urljoin(base, location)


# --- SOAP -------------------------------------------------------------------------------------


def envelope(method, ns, params):
    return (
        f'<SOAP-ENV:Envelope xmlns:SOAP-ENV="{SOAP_ENV}"><SOAP-ENV:Body>'
        f'<m:{method} xmlns:m="urn:{ns}">{params}</m:{method}>'
        "</SOAP-ENV:Body></SOAP-ENV:Envelope>"
    )


def esc(s):
    return (
        s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    )


def soap(b, url, action, body, session=None):
    """One SOAP call; the parsed envelope, or Failure naming the status or the fault."""
    headers = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": action}
    if session:
        headers["X-Session-Token"], headers["X-Security-Token"] = session
    status, _, text = b.request("POST", url + "/nl/jsp/soaprouter.jsp", body, headers)
    if status != 200:
        raise Failure(f"{action}: HTTP {status}: {text[:200]}")
    try:
        root = ET.fromstring(text)
    except ET.ParseError as e:
        raise Failure(f"{action}: not XML ({e}): {text[:200]}") from None
    fault = root.find(f".//{{{SOAP_ENV}}}Fault")
    if fault is not None:
        raise Failure(f"{action}: fault {text_of(fault, 'faultstring')}")
    return root


def text_of(root, name):
    """The text of the first element of that local name (answers put theirs in a namespace)."""
    for e in root.iter():
        if e.tag.rsplit("}", 1)[-1] == name:
            return (e.text or "").strip()
    return None


def logon(b, url, login, password):
    root = soap(
        b,
        url,
        "xtk:session#Logon",
        envelope(
            "Logon",
            "xtk:session",
            f"<sessiontoken/><login>{esc(login)}</login><password>{esc(password)}</password><parameters/>",
        ),
    )
    session = text_of(root, "pstrSessionToken")
    security = text_of(root, "pstrSecurityToken")
    if not session or not security:
        raise Failure("xtk:session#Logon: no session token in the answer")
    return session, security


def server_time(b, url, session):
    root = soap(
        b, url, "xtk:session#GetServerTime", envelope("GetServerTime", "xtk:session", "<sessiontoken/>"), session
    )
    if not re.match(r"\d{4}-\d\d-\d\d", "".join(root.itertext()).strip()):
        raise Failure("xtk:session#GetServerTime: no time in the answer")


def count_recipients(b, url, session):
    doc = '<queryDef schema="nms:recipient" operation="count"/>'
    root = soap(
        b,
        url,
        "xtk:queryDef#ExecuteQuery",
        envelope("ExecuteQuery", "xtk:queryDef", f"<sessiontoken/><entity>{doc}</entity>"),
        session,
    )
    counted = [e.get("count") for e in root.iter() if e.get("count") is not None]
    if not counted or int(counted[0]) < 1:
        raise Failure("xtk:queryDef#ExecuteQuery: no recipient counted")


def logoff(b, url, session):
    soap(b, url, "xtk:session#Logoff", envelope("Logoff", "xtk:session", "<sessiontoken/>"), session)


def write_operator(b, url, session, login, password):
    doc = (
        f'<operator xtkschema="xtk:operator" _operation="update" _key="@name" '
        f'name="{esc(login)}" password="{esc(password)}"/>'
    )
    soap(
        b,
        url,
        "xtk:persist|xtk:session#Write",
        envelope("Write", "xtk:session", f"<sessiontoken/><domDoc>{doc}</domDoc>"),
        session,
    )


def operators_with_email(b, url, session, suffix):
    doc = (
        '<queryDef schema="xtk:operator" operation="select" lineCount="1000000">'
        '<select><node expr="@name"/><node expr="@email"/></select>'
        f"<where><condition expr=\"@email like '%{suffix}'\"/></where>"
        '<orderBy><node expr="@name"/></orderBy></queryDef>'
    )
    root = soap(
        b,
        url,
        "xtk:queryDef#ExecuteQuery",
        envelope("ExecuteQuery", "xtk:queryDef", f"<sessiontoken/><entity>{doc}</entity>"),
        session,
    )
    return [(e.get("name"), e.get("email")) for e in root.iter() if e.get("name") and e.get("email")]


# --- setup ------------------------------------------------------------------------------------


def setup(args):
    up = json.load(open(args.up))
    inst = next(i for i in up["instances"] if i["name"] == args.instance)
    b = Browser(30)
    admin = logon(b, inst["url"], inst["admin_login"], inst["admin_password"])
    found = operators_with_email(b, inst["url"], admin, args.email_suffix)
    if len(found) < args.people:
        sys.exit(f"setup: {len(found)} operators with an email ending {args.email_suffix}, {args.people} wanted")
    # Spread over the population, so that people are moved early, midway and last.
    step = len(found) / args.people
    sample = [found[int(i * step + step / 2)] for i in range(args.people)]
    out = {"instance_url": inst["url"], "ims_url": up["ims_url"], "integrations": {}, "people": []}
    for login in INTEGRATIONS:
        pw = "pw-" + secrets.token_urlsafe(18)
        write_operator(b, inst["url"], admin, login, pw)
        out["integrations"][login] = pw
    pwdir = os.path.join(os.path.dirname(os.path.abspath(args.out)), "passwords")
    os.makedirs(pwdir, mode=0o700, exist_ok=True)

    def person(entry):
        login, email = entry
        native, ims = "pw-" + secrets.token_urlsafe(18), "ims-" + secrets.token_urlsafe(18)
        pwfile = os.path.join(pwdir, login)
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(ims + "\n")
        r = subprocess.run(
            [args.ims, "user", "create", "--data-dir", args.data_dir, "--email", email,
             "--password-file", pwfile, "--type", "enterpriseID", "--json"],
            capture_output=True, text=True,
        )
        os.unlink(pwfile)
        if r.returncode != 0:
            raise RuntimeError(f"ims user create {email}: {r.stderr.strip()}")
        return {"login": login, "email": email, "native_password": native, "ims_password": ims}

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        out["people"] = list(pool.map(person, sample))
    for p in out["people"]:
        write_operator(b, inst["url"], admin, p["login"], p["native_password"])
    logoff(b, inst["url"], admin)
    b.close()
    os.rmdir(pwdir)
    fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(out, f, indent=1)
    print(f"setup: passwords set for {len(INTEGRATIONS)} integrations and {len(sample)} people "
          f"(of {len(found)} with an email), their IMS accounts created")


# --- run --------------------------------------------------------------------------------------


class Recorder:
    def __init__(self):
        self.lock = threading.Lock()
        self.calls = []  # (integration, thread kind, action, start ms, end ms, error or None)
        self.attempts = []  # dicts, one per person sign-in attempt
        self.seen_ok = set()

    def call(self, *row):
        with self.lock:
            self.calls.append(row)
            if row[5] is None:
                self.seen_ok.add(("integration", row[0], row[1]))

    def attempt(self, a):
        with self.lock:
            self.attempts.append(a)
            if a["ok"]:
                self.seen_ok.add(("person", a["login"]))


def timed(rec, who, kind, action, fn):
    """Runs one call, recording it; True when it succeeded."""
    t0 = now_ms()
    try:
        fn()
    except (Failure, OSError, http.client.HTTPException) as e:
        rec.call(who, kind, action, t0, now_ms(), f"{type(e).__name__}: {e}" if not isinstance(e, Failure) else str(e))
        return False
    rec.call(who, kind, action, t0, now_ms(), None)
    return True


def integration_short(cfg, rec, stop, login, password, pause, timeout):
    """Sign in, two calls, sign off, again: an integration's scheduled job."""
    url = cfg["instance_url"]
    b = Browser(timeout)
    while not stop.is_set():
        box = {}

        def do_logon():
            box["s"] = logon(b, url, login, password)

        if timed(rec, login, "short", "Logon", do_logon):
            s = box["s"]
            timed(rec, login, "short", "GetServerTime", lambda: server_time(b, url, s))
            timed(rec, login, "short", "ExecuteQuery", lambda: count_recipients(b, url, s))
            timed(rec, login, "short", "Logoff", lambda: logoff(b, url, s))
        stop.wait(pause)
    b.close()


def integration_long(cfg, rec, stop, login, password, pause, timeout):
    """One session for the whole run: a connector that signs in once and keeps calling."""
    url = cfg["instance_url"]
    b = Browser(timeout)
    box = {}
    while not stop.is_set() and "s" not in box:
        def do_logon():
            box["s"] = logon(b, url, login, password)

        if not timed(rec, login, "long", "Logon", do_logon):
            stop.wait(pause)
    i = 0
    while not stop.is_set():
        s = box["s"]
        if i % 2 == 0:
            timed(rec, login, "long", "GetServerTime", lambda: server_time(b, url, s))
        else:
            timed(rec, login, "long", "ExecuteQuery", lambda: count_recipients(b, url, s))
        i += 1
        stop.wait(pause)
    if "s" in box:
        timed(rec, login, "long", "Logoff", lambda: logoff(b, url, box["s"]))
    b.close()


def console_home(b, url):
    """The console's home page, as the browser lands on it: the operator it shows, or None when
    the session does not open it (sent back to the sign-in page)."""
    status, resp, text = b.request("GET", url + "/console/")
    if status == 200:
        return text
    if status in (302, 303) and "/console/login" in (resp.getheader("Location") or ""):
        return None
    raise Failure(f"GET /console/: HTTP {status}")


def native_sign_in(b, url, login, password):
    """The console's sign-in form: 'ok', 'refused', or 'ghost' (accepted, but the session does
    not open the console)."""
    status, _, page = b.request("GET", url + "/console/login")
    if status != 200:
        raise Failure(f"GET /console/login: HTTP {status}")
    m = re.search(r'name="csrf" value="([^"]+)"', page)
    if not m:
        raise Failure("the console's sign-in form has no csrf field")
    form = urllib.parse.urlencode({"csrf": m.group(1), "login": login, "password": password})
    status, resp, text = b.request(
        "POST", url + "/console/login", form, {"Content-Type": "application/x-www-form-urlencoded"}
    )
    if status == 401:
        return "refused"
    if status != 303 or resp.getheader("Location") != "/console/":
        raise Failure(f"POST /console/login: HTTP {status}: {text[:200]}")
    home = console_home(b, url)
    if home is None:
        return "ghost"
    if login not in home:
        raise Failure("the console's home page does not show the operator signed in")
    return "ok"


def error_text(html):
    m = re.search(r'class="error"[^>]*>([^<]*)<', html)
    return m.group(1).strip() if m else html[:160]


def ims_sign_in(b, url, email, password, login):
    """'Connect with IMS': the instance sends the browser to the IMS, the IMS's sign-in form
    (email, then password) sends it back to the instance's callback. 'ok' or 'refused: why'."""
    status, resp, _ = b.request("GET", url + "/console/ims/login")
    if status != 303:
        raise Failure(f"GET /console/ims/login: HTTP {status}")
    authorize = resp.getheader("Location")
    status, resp, text = b.request("GET", authorize)
    if status != 303 or "/ims/signin/" not in (resp.getheader("Location") or ""):
        raise Failure(f"the IMS's authorize: HTTP {status}: {text[:200]}")
    page_url = b.follow(authorize, resp.getheader("Location"))
    for field, value in (("email", email), ("password", password)):
        status, _, page = b.request("GET", page_url)
        m = re.search(r'name="csrf" value="([^"]+)"', page)
        if status != 200 or not m:
            raise Failure(f"the IMS's sign-in page ({field}): HTTP {status}: {error_text(page)}")
        form = urllib.parse.urlencode({"csrf": m.group(1), field: value})
        status, resp, text = b.request(
            "POST", page_url, form, {"Content-Type": "application/x-www-form-urlencoded"}
        )
        if status != 303:
            raise Failure(f"the IMS's sign-in ({field}): HTTP {status}: {error_text(text)}")
    callback = resp.getheader("Location")
    if "/console/ims/callback" not in callback:
        raise Failure(f"the IMS sent the browser to {callback[:120]}, not the instance's callback")
    status, resp, text = b.request("GET", b.follow(page_url, callback))
    if status == 403:
        return "refused: " + error_text(text)
    if status != 303 or resp.getheader("Location") != "/console/":
        raise Failure(f"GET /console/ims/callback: HTTP {status}: {error_text(text)}")
    home = console_home(b, url)
    if home is None or login not in home:
        raise Failure("signed in through the IMS, but the console's home page does not open")
    return "ok"


def people_worker(cfg, rec, stop, people, pause, timeout):
    url = cfg["instance_url"]
    while not stop.is_set():
        for p in people:
            if stop.is_set():
                break
            # A fresh browser each time: nobody is still signed in from the previous attempt.
            b = Browser(timeout)
            a = {"login": p["login"], "start": now_ms(), "native": None, "ims": None, "ok": False}
            try:
                a["native"] = native_sign_in(b, url, p["login"], p["native_password"])
                a["native_at"] = now_ms()
                if a["native"] == "ok":
                    a["ok"] = True
                else:
                    b.forget_cookies()
                    a["ims"] = ims_sign_in(b, url, p["email"], p["ims_password"], p["login"])
                    a["ok"] = a["ims"] == "ok"
            except (Failure, OSError, http.client.HTTPException) as e:
                msg = str(e) if isinstance(e, Failure) else f"{type(e).__name__}: {e}"
                if a["native"] is None:
                    a["native"] = "error: " + msg
                else:
                    a["ims"] = "error: " + msg
            a["end"] = now_ms()
            b.close()
            rec.attempt(a)
            stop.wait(pause)


def moves(args):
    """When each person was moved: the instance's audit line of the switch."""
    r = subprocess.run(
        [args.ims, "instance", "audit", "--data-dir", args.data_dir, "--instance", args.instance,
         "--action", "operator.migrate", "--limit", "10000000"],
        capture_output=True, text=True, check=True,
    )
    return {e["target"]: e["at"] for e in json.loads(r.stdout) if e.get("outcome") == "success"}


def pct(values, q):
    if not values:
        return 0
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def judge(args, cfg, rec, phases):
    problems = []
    apply_at = phases.get("apply")
    moved_at = moves(args)
    plan = json.load(open(args.plan)) if args.plan and os.path.exists(args.plan) else None
    planned = {p["login"] for p in plan["people"]} if plan else set()

    # Integrations: every call counts, none may fail.
    calls = rec.calls
    failed = [c for c in calls if c[5] is not None]
    during = [c for c in calls if apply_at and c[3] >= apply_at[0] and c[4] <= apply_at[1]]
    lat = [c[4] - c[3] for c in calls if c[5] is None]
    lat_during = [c[4] - c[3] for c in during if c[5] is None]
    # Before anything of the migration ran: what the same calls cost on a quiet instance.
    first = min((v[0] for v in phases.values()), default=None)
    lat_before = [c[4] - c[3] for c in calls if c[5] is None and first and c[4] < first]
    for c in failed[:20]:
        problems.append(f"integration {c[0]} ({c[1]} session) {c[2]} at +{c[3] - rec.t0} ms failed: {c[5]}")
    if len(failed) > 20:
        problems.append(f"... and {len(failed) - 20} more failed integration calls")
    for login in INTEGRATIONS:
        if not during or not any(c[0] == login for c in during):
            problems.append(f"integration {login}: no call fell inside the apply, so it proves nothing")

    # People: each one's window, and failures outside it.
    per = {}
    for a in sorted(rec.attempts, key=lambda a: a["start"]):
        per.setdefault(a["login"], []).append(a)
    windows = {}
    outside = []
    inside = 0
    lag = []
    native_after = []
    for p in cfg["people"]:
        login = p["login"]
        atts = per.get(login, [])
        if plan and login not in planned:
            problems.append(f"person {login} is not in the plan: the sample says nothing about it")
            continue
        at = moved_at.get(login)
        refused = [a for a in atts if a["native"] in ("refused", "ghost")]
        ims_ok = [a for a in atts if a["ims"] == "ok"]
        if at is None:
            problems.append(f"person {login} was never moved (no operator.migrate line)")
            continue
        if not ims_ok:
            problems.append(f"person {login}: no IMS sign-in ever succeeded (moved at +{at - rec.t0} ms)")
            continue
        w0 = refused[0]["start"] if refused else ims_ok[0]["start"]
        w1 = ims_ok[0]["end"]
        windows[login] = (w0, w1)
        lag.append(w1 - at)
        for a in atts:
            if a["ok"]:
                continue
            if w0 <= a["start"] and a["end"] <= w1:
                inside += 1
            else:
                outside.append((login, a))
        # The audit line carries the time the switch request arrived; it commits a little
        # later, so a password accepted after that instant is counted, not judged: the home page
        # each native success opens proves the operator was still native then.
        for a in atts:
            if a["native"] == "ok" and a["start"] > at:
                native_after.append(a["native_at"] - at)
            # Once the person has signed in through the IMS, the move has committed: the
            # password must never work again.
            if a["native"] == "ok" and a["start"] > w1:
                problems.append(f"person {login}: the password signed in at +{a['start'] - rec.t0} ms, "
                                f"after its IMS sign-in at +{w1 - rec.t0} ms")
            if a["native"] in ("refused", "ghost") and a["native_at"] < at:
                problems.append(f"person {login}: native sign-in refused at +{a['native_at'] - rec.t0} ms, "
                                f"before its move at +{at - rec.t0} ms")
    for login, a in outside[:20]:
        problems.append(f"person {login}: sign-in failed outside its window at +{a['start'] - rec.t0} ms "
                        f"(native: {a['native']}; IMS: {a['ims']})")
    # Accepted passwords whose session the console then refused: when relative to the move.
    ghosts = [a["native_at"] - moved_at[a["login"]] for a in rec.attempts
              if a["native"] == "ghost" and a["login"] in moved_at]
    by_action = {}
    for c in calls:
        if c[5] is None:
            by_action.setdefault(c[2], []).append(c[4] - c[3])
    failed_attempts = sum(1 for a in rec.attempts if not a["ok"])
    widths = [w1 - w0 for w0, w1 in windows.values()]
    worst = max(windows.items(), key=lambda kv: kv[1][1] - kv[1][0]) if windows else None

    report = {
        "integration_calls": len(calls),
        "integration_calls_failed": len(failed),
        "integration_calls_during_apply": len(during),
        "integration_latency_ms": {"p50": pct(lat, 0.5), "p99": pct(lat, 0.99), "max": max(lat, default=0)},
        "integration_latency_before_migration_ms": {
            "p50": pct(lat_before, 0.5), "p99": pct(lat_before, 0.99), "max": max(lat_before, default=0)},
        "integration_latency_during_apply_ms": {
            "p50": pct(lat_during, 0.5), "p99": pct(lat_during, 0.99), "max": max(lat_during, default=0)},
        "people": len(cfg["people"]),
        "person_attempts": len(rec.attempts),
        "person_attempts_native_ok": sum(1 for a in rec.attempts if a["native"] == "ok"),
        "person_attempts_ims_ok": sum(1 for a in rec.attempts if a["ims"] == "ok"),
        "person_attempts_failed": failed_attempts,
        "person_attempts_failed_inside_window": inside,
        "person_attempts_failed_outside_window": len(outside),
        "person_native_accepted_after_move_request": len(native_after),
        "person_native_accepted_after_move_request_max_ms": max(native_after, default=0),
        "integration_latency_by_action_ms": {
            k: {"calls": len(v), "p99": pct(v, 0.99), "max": max(v)} for k, v in sorted(by_action.items())},
        "person_native_ghost_sessions": len(ghosts),
        "person_native_ghost_ms_after_move_request": sorted(ghosts),
        "window_ms": {"max": max(widths, default=0), "p50": pct(widths, 0.5),
                      "worst": worst[0] if worst else None},
        "move_to_first_ims_success_ms": {"max": max(lag, default=0), "p50": pct(lag, 0.5)},
        "phases_ms": {k: v[1] - v[0] for k, v in phases.items()},
        "problems": problems,
    }
    return report


def read_phases(path):
    phases = {}
    if path and os.path.exists(path):
        for line in open(path):
            parts = line.split()
            if len(parts) == 3:
                phases[parts[0]] = (int(parts[1]), int(parts[2]))
    return phases


def run(args):
    cfg = json.load(open(args.secrets))
    rec = Recorder()
    rec.t0 = now_ms()
    stop = threading.Event()
    threads = []
    for login, pw in cfg["integrations"].items():
        for _ in range(args.integration_threads):
            threads.append(threading.Thread(
                target=integration_short, args=(cfg, rec, stop, login, pw, args.pause, args.timeout)))
        threads.append(threading.Thread(
            target=integration_long, args=(cfg, rec, stop, login, pw, args.pause, args.timeout)))
    people = list(cfg["people"])
    random.Random(7).shuffle(people)
    n = max(1, min(args.people_threads, len(people)))
    for i in range(n):
        threads.append(threading.Thread(
            target=people_worker, args=(cfg, rec, stop, people[i::n], args.pause, args.timeout)))
    for t in threads:
        t.daemon = True
        t.start()
    want = {("integration", l, k) for l in cfg["integrations"] for k in ("short", "long")}
    want |= {("person", p["login"]) for p in cfg["people"]}
    ready = False
    while not os.path.exists(args.stop_file):
        if not ready:
            with rec.lock:
                ready = want <= rec.seen_ok
            if ready:
                # Everyone has worked once, natively: the baseline the migration starts from.
                open(args.ready_file, "w").close()
        time.sleep(0.05)
    stop.set()
    for t in threads:
        t.join(args.timeout * 4 + 5)
    if not ready:
        print("the load never had every integration and person succeed once before the stop", file=sys.stderr)
    report = judge(args, cfg, rec, read_phases(args.phases))
    if not ready:
        report["problems"].insert(0, "the baseline never completed: not every integration and person succeeded once")
    with open(args.report, "w") as f:
        json.dump(report, f, indent=1)
    r = report
    print(f"integration calls: {r['integration_calls']} made ({r['integration_calls_during_apply']} during apply), "
          f"{r['integration_calls_failed']} failed; latency p50 {r['integration_latency_ms']['p50']} ms, "
          f"p99 {r['integration_latency_ms']['p99']} ms, max {r['integration_latency_ms']['max']} ms "
          f"(before the migration: p99 {r['integration_latency_before_migration_ms']['p99']} ms, "
          f"max {r['integration_latency_before_migration_ms']['max']} ms; during apply: "
          f"p99 {r['integration_latency_during_apply_ms']['p99']} ms, "
          f"max {r['integration_latency_during_apply_ms']['max']} ms)")
    print(f"person sign-ins: {r['person_attempts']} attempts by {r['people']} people "
          f"({r['person_attempts_native_ok']} with the password, {r['person_attempts_ims_ok']} through the IMS), "
          f"{r['person_attempts_failed']} failed: {r['person_attempts_failed_inside_window']} inside a window, "
          f"{r['person_attempts_failed_outside_window']} outside")
    print(f"window (first refused password -> first IMS success): max {r['window_ms']['max']} ms "
          f"({r['window_ms']['worst']}), median {r['window_ms']['p50']} ms; move -> first IMS success: "
          f"max {r['move_to_first_ims_success_ms']['max']} ms; password accepted after the switch request "
          f"arrived (before it committed): {r['person_native_accepted_after_move_request']} "
          f"(up to {r['person_native_accepted_after_move_request_max_ms']} ms after); accepted password "
          f"whose session did not open: "
          f"{r['person_native_ghost_sessions']}")
    print("integration latency by call: " + ", ".join(
        f"{k} {v['calls']} calls p99 {v['p99']} ms max {v['max']} ms"
        for k, v in r["integration_latency_by_action_ms"].items()))
    for p in r["problems"]:
        print("FAIL: " + p)
    return 1 if r["problems"] else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("setup")
    s.add_argument("--up", required=True, help="up.json of the running `ims up`")
    s.add_argument("--ims", required=True, help="the ims binary")
    s.add_argument("--data-dir", required=True)
    s.add_argument("--instance", default="marketing")
    s.add_argument("--people", type=int, default=50)
    s.add_argument("--email-suffix", default="@scale.example.com")
    s.add_argument("--out", required=True)
    r = sub.add_parser("run")
    r.add_argument("--secrets", required=True)
    r.add_argument("--ims", required=True)
    r.add_argument("--data-dir", required=True)
    r.add_argument("--instance", default="marketing")
    r.add_argument("--plan", help="the users plan, to check the sample is in it")
    r.add_argument("--phases", help="a file of 'name start_ms end_ms' lines, read at the end")
    r.add_argument("--ready-file", required=True)
    r.add_argument("--stop-file", required=True)
    r.add_argument("--report", required=True)
    r.add_argument("--integration-threads", type=int, default=2, help="short-session threads per integration")
    r.add_argument("--people-threads", type=int, default=4)
    r.add_argument("--pause", type=float, default=0.02, help="seconds between a thread's rounds")
    r.add_argument("--timeout", type=float, default=5.0, help="seconds a call may take before it fails")
    args = ap.parse_args()
    if args.cmd == "setup":
        setup(args)
        return 0
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
