"""The crash matrix of the end-user phase (run by `bench/migration/crash`, which builds the binary).

One `ims up --plain-http` with a seeded population; then RUNS times: plan the whole population,
start `ims migrate apply` and `kill -9` it (or, some runs, `ims up` itself) after a delay drawn
from a seeded generator, resume until the plan is applied, check the invariants, roll everyone
back (some runs killed there too, and resumed) and check that everyone is back as they were.

The invariants, against a snapshot taken before the first run:
  1. no operator lost or added;
  2. every operator's email, groups, direct rights and disabled state unchanged; the planned
     people signing in through the IMS, linked, the others as they were;
  3. no duplicate identity: one IMS user per email, the organisation's users the same ids as
     before, each IMS user linked by at most one operator, each moved operator linked to the
     user of its email;
  4. no widened right: each user holds exactly the profiles of its operator's groups on this
     instance (nothing beyond, no other group of theirs touched);
  5. every person can sign in: a sample signs in to the instance's console through the IMS (the
     real browser flow) and lands on its own operator, the instance changing nothing;
  6. `ims migrate status --json` reconciles both sides with no difference;
  7. the plan applied once more writes nothing (neither audit log moves);
  8. each person moved exactly once (the instance's audit log), and put back exactly once.

Standard library only. Environment: OPERATORS (10000), RUNS (200), SEED (20261127), SAMPLE
(sign-ins per run, 20), PROBES (people given an IMS password, 100), SERVER_KILL_EVERY (10: one
run in ten kills `ims up` instead of the engine), ROLLBACK_KILL_EVERY (3), JOURNAL (`per-run`: a
journal per run, as one migration has; `shared`: every run in the one default journal),
APPLY_SECS and ROLLBACK_SECS (the durations the kills are drawn over; default: measured by the
second calibration cycle)."""

import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

PASSWORD = "a crash-matrix passphrase"
INSTANCE = "marketing"
MAX_RESUMES = 3


class Failure(Exception):
    """An invariant that does not hold (or a step that did not behave): the run stops here."""


def check(cond, what):
    if not cond:
        raise Failure(what)


def say(text):
    print(text, flush=True)


def free_port_base(width=4):
    """A port whose next `width - 1` neighbours are free too (`ims up` takes one per service)."""
    for _ in range(200):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        base = s.getsockname()[1]
        s.close()
        if base + width > 65535:
            continue
        ok = True
        for p in range(base, base + width):
            t = socket.socket()
            try:
                t.bind(("127.0.0.1", p))
            except OSError:
                ok = False
            finally:
                t.close()
        if ok:
            return base
    raise RuntimeError("no free port range")


def request(base, method, path, body=None, headers=None, timeout=120):
    u = urllib.parse.urlparse(base)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    try:
        conn.request(method, path, body, headers or {})
        r = conn.getresponse()
        return r.status, r.msg, r.read()
    finally:
        conn.close()


def email_key(email):
    return (email or "").strip().lower()


class Bench:
    def __init__(self, ims, work):
        self.ims = ims
        self.work = work
        self.data = os.path.join(work, "data")
        self.port = free_port_base()
        self.server = None
        self.log = open(os.path.join(work, "up.log"), "ab")
        self.journal = None  # the default one beside up.json

    # -- the services -------------------------------------------------------------------------

    def start_server(self):
        # The User Management API's per-client budget (600 calls a minute) would make every run
        # wait minutes for it alone: raised, as in bench/migration/run.
        env = dict(os.environ, IMS_LOG="warn", IMS_UMAPI_REQUESTS_PER_MINUTE="100000000")
        self.server = subprocess.Popen(
            [self.ims, "up", "--data-dir", self.data, "--port-base", str(self.port), "--plain-http"],
            stdout=self.log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            check(self.server.poll() is None, f"ims up exited ({self.server.returncode}); see {self.log.name}")
            try:
                if os.path.exists(os.path.join(self.data, "up.json")):
                    a = request(f"http://127.0.0.1:{self.port}", "GET", "/health/ready", timeout=2)[0]
                    b = request(f"http://127.0.0.1:{self.port + 1}", "GET", "/r/test", timeout=2)[0]
                    if a == 200 and b == 200:
                        break
            except OSError:
                pass
            time.sleep(0.1)
        else:
            raise Failure("ims up did not become ready in 120 s")
        with open(os.path.join(self.data, "up.json")) as f:
            self.up = json.load(f)
        self.ims_url = self.up["ims_url"]
        inst = next(i for i in self.up["instances"] if i["name"] == INSTANCE)
        self.instance_url = inst["url"]
        self.admin = (inst["admin_login"], inst["admin_password"])

    def kill_server(self):
        os.kill(self.server.pid, signal.SIGKILL)
        self.server.wait()

    def stop_server(self):
        if self.server and self.server.poll() is None:
            self.server.terminate()
            try:
                self.server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.server.kill()
                self.server.wait()

    # -- the command line ---------------------------------------------------------------------

    def cmd(self, *args):
        return [self.ims, *args]

    def migrate_args(self, *args):
        a = [self.ims, "migrate", *args, "--data-dir", self.data, "--instance", INSTANCE]
        if self.journal:
            a += ["--journal", self.journal]
        return a

    def run(self, argv, ok=True, timeout=1800):
        p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        if ok and p.returncode != 0:
            raise Failure(f"{' '.join(argv[1:4])} exited {p.returncode}:\n{p.stderr[-3000:]}\n{p.stdout[-2000:]}")
        return p

    def migrate(self, *args, ok=True, timeout=1800):
        return self.run(self.migrate_args(*args), ok=ok, timeout=timeout)

    def status(self):
        p = self.migrate("status", "--json", ok=False)
        try:
            return p.returncode, json.loads(p.stdout)
        except ValueError:
            raise Failure(f"status --json gave no JSON (exit {p.returncode}): {p.stderr[-2000:]}")

    def newest_audit(self):
        """The newest line of each audit log (the instance's and the IMS's): a write moves one."""
        inst = self.run(self.cmd("instance", "audit", "--data-dir", self.data, "--instance", INSTANCE,
                                 "--limit", "1")).stdout
        org = self.run(self.cmd("audit", "--data-dir", self.data, "--limit", "1", "--json")).stdout
        return inst, org

    def migrations_since(self, since_ms, expect):
        """The instance's `operator.migrate` audit lines since `since_ms`, newest first; reads
        enough to be sure the window is covered."""
        limit = expect + 50
        while True:
            out = self.run(self.cmd("instance", "audit", "--data-dir", self.data, "--instance", INSTANCE,
                                    "--action", "operator.migrate", "--limit", str(limit))).stdout
            lines = json.loads(out)
            recent = [x for x in lines if x["at"] >= since_ms]
            if len(lines) < limit or len(recent) < len(lines):
                return recent
            limit *= 4

    # -- the two services' APIs, as the engine reads them -------------------------------------

    def instance_session(self):
        login, password = self.admin
        env = ('<?xml version="1.0" encoding="UTF-8"?><SOAP-ENV:Envelope xmlns:SOAP-ENV='
               '"http://schemas.xmlsoap.org/soap/envelope/" xmlns:ns="urn:xtk:session"><SOAP-ENV:Body>'
               f"<ns:Logon><ns:sessiontoken/><ns:strLogin>{login}</ns:strLogin><ns:strPassword>{password}"
               "</ns:strPassword><ns:elemParameters/></ns:Logon></SOAP-ENV:Body></SOAP-ENV:Envelope>")
        _, _, body = request(self.instance_url, "POST", "/nl/jsp/soaprouter.jsp", env.encode(),
                             {"content-type": "text/xml; charset=utf-8", "soapaction": "xtk:session#Logon"})
        text = body.decode()
        tok = lambda n: re.search(rf"<{n}[^>]*>([^<]+)</{n}>", text).group(1)  # noqa: E731
        return {"x-session-token": tok("pstrSessionToken"), "x-security-token": tok("pstrSecurityToken")}

    def instance_get(self, headers, path):
        status, _, body = request(self.instance_url, "GET", "/nl/migration/v1" + path, headers=headers)
        check(status == 200, f"GET {path}: {status} {body[:300]!r}")
        return json.loads(body)

    def operators(self):
        h = self.instance_session()
        out, after = [], 0
        while True:
            page = self.instance_get(h, f"/operators?after={after}&limit=5000")
            out.extend(page["operators"])
            nxt = page.get("next_after")
            if nxt is None or nxt <= after:
                return out
            after = nxt

    def facts(self):
        return self.instance_get(self.instance_session(), "/instance")

    def ims_users(self):
        with open(os.path.join(self.data, "migration-credential.json")) as f:
            cred = json.load(f)
        form = urllib.parse.urlencode({"grant_type": "client_credentials", "client_id": cred["client_id"],
                                       "client_secret": cred["client_secret"]})
        status, _, body = request(self.ims_url, "POST", "/ims/token/v3", form,
                                  {"Content-Type": "application/x-www-form-urlencoded"})
        check(status == 200, f"the migration credential's token: {status}")
        h = {"Authorization": "Bearer " + json.loads(body)["access_token"], "x-api-key": cred["client_id"]}
        org = self.up["org_id"]
        users = []
        for page in range(100000):
            status, _, body = request(self.ims_url, "GET", f"/v2/usermanagement/users/{org}/{page}?directOnly=False",
                                      headers=h)
            check(status == 200, f"user list page {page}: {status}")
            v = json.loads(body)
            users.extend(v.get("users", []))
            if v.get("lastPage") is not False:
                return users

    def snapshot(self):
        return {"operators": self.operators(), "users": self.ims_users()}

    # -- a person signing in to the instance's console through the IMS --------------------------

    def sign_in(self, email):
        """The browser's way: the console's "Connect with IMS", the IMS's sign-in pages, the
        callback, the console's home page. Returns (status of the callback, login shown or the
        refusal, the notice, authentication type)."""
        st, h, _ = request(self.instance_url, "GET", "/console/ims/login")
        check(st == 303, f"/console/ims/login: {st}")
        flow = h.get("Set-Cookie").split(";")[0]
        u = urllib.parse.urlparse(h.get("Location"))
        st, h, _ = request(self.ims_url, "GET", f"{u.path}?{u.query}")
        page, browser = h.get("Location"), h.get("Set-Cookie").split(";")[0]
        st, h, body = request(self.ims_url, "GET", page, headers={"Cookie": browser})
        csrf = re.search(r'name="csrf" value="([^"]+)"', body.decode()).group(1)
        form = {"Content-Type": "application/x-www-form-urlencoded", "Cookie": browser}
        request(self.ims_url, "POST", page, urllib.parse.urlencode({"csrf": csrf, "email": email}), form)
        st, h, body = request(self.ims_url, "POST", page,
                              urllib.parse.urlencode({"csrf": csrf, "password": PASSWORD}), form)
        back = h.get("Location") or ""
        check(st == 303 and back.startswith(self.instance_url),
              f"the IMS did not send {email} back to the instance: {st} {back} {body[:300]!r}")
        u = urllib.parse.urlparse(back)
        st, h, body = request(self.instance_url, "GET", f"{u.path}?{u.query}", headers={"Cookie": flow})
        if st != 303:
            err = re.search(r'class="error"[^>]*>([^<]*)<', body.decode())
            return st, err.group(1) if err else body[:200].decode(errors="replace"), None, None
        cookies = "; ".join(c.split(";")[0] for c in h.get_all("Set-Cookie"))
        st, h, body = request(self.instance_url, "GET", "/console/", headers={"Cookie": cookies})
        text = body.decode()
        login = re.search(r"<dt>Login</dt><dd>([^<]*)</dd>", text)
        auth = re.search(r'<dd id="auth-type">([^<]*)</dd>', text)
        notice = re.search(r"Signed in through the IMS: ([^<]*)", text)
        return (st, login.group(1) if login else None, notice.group(1).strip().rstrip(".") if notice else None,
                auth.group(1) if auth else None)

    def set_passwords(self, emails):
        pw = os.path.join(self.work, "probe-password")
        with open(pw, "w") as f:
            f.write(PASSWORD + "\n")
        for e in emails:
            self.run(self.cmd("user", "set-password", "--data-dir", self.data, "--email", e, "--password-file", pw))


# -- the invariants -----------------------------------------------------------------------------

def by_login(ops):
    out = {}
    for o in ops:
        check(o["login"] not in out, f"the login {o['login']} is listed twice")
        out[o["login"]] = o
    return out


def captured(mask, name):
    m = re.fullmatch(mask, name)
    return m.group(1) if m else None


def check_same_people(before, ops):
    """Invariant 1 and the unchanging part of 2."""
    was, now = by_login(before["operators"]), by_login(ops)
    lost, added = sorted(set(was) - set(now)), sorted(set(now) - set(was))
    check(not lost and not added, f"operators lost {lost[:10]} ({len(lost)}), added {added[:10]} ({len(added)})")
    for login, o in now.items():
        w = was[login]
        for field in ("email", "disabled"):
            check(o[field] == w[field], f"{login}: {field} was {w[field]!r}, now {o[field]!r}")
        for field in ("groups", "rights"):
            check(sorted(o[field]) == sorted(w[field]),
                  f"{login}: {field} were {sorted(w[field])}, now {sorted(o[field])}")
    return was, now


def check_users(before, users, mask, expected_profiles):
    """Invariants 3 (no identity twice, none replaced) and 4 (each user holds exactly the
    instance's profiles expected of it, and its other groups as they were)."""
    keys = Counter(email_key(u["email"]) for u in users)
    twice = [k for k, n in keys.items() if n > 1]
    check(not twice, f"IMS users sharing an email: {twice[:10]}")
    was = {u["id"]: u for u in before["users"]}
    now = {u["id"]: u for u in users}
    check(set(was) == set(now),
          f"IMS users added {sorted(set(now) - set(was))[:10]}, gone {sorted(set(was) - set(now))[:10]}")
    for uid, u in now.items():
        w = was[uid]
        check(email_key(u["email"]) == email_key(w["email"]), f"IMS user {uid}: email {w['email']} -> {u['email']}")
        check(u["status"] == w["status"], f"IMS user {u['email']}: status {w['status']} -> {u['status']}")
        mine = {g for g in u.get("groups", []) if captured(mask, g) is not None}
        other = {g for g in u.get("groups", []) if captured(mask, g) is None}
        was_other = {g for g in w.get("groups", []) if captured(mask, g) is None}
        want = expected_profiles.get(email_key(u["email"]), set())
        check(mine == want, f"IMS user {u['email']}: holds {sorted(mine)} of the instance, expected {sorted(want)}")
        check(other == was_other, f"IMS user {u['email']}: other groups {sorted(was_other)} -> {sorted(other)}")
    return now


def check_moved(bench, before, people, mask, sample, since_ms):
    """Every invariant after a resumed apply. Returns a few figures for the run's line."""
    planned = {p["login"]: p for p in people}
    # 5. A sample signs in first, so that anything a sign-in changed shows in the checks below.
    def one(p):
        return p, bench.sign_in(p["email"])
    with ThreadPoolExecutor(4) as pool:
        for p, (st, login, notice, auth) in pool.map(one, sample):
            check(st == 200 and login == p["login"] and auth == "IMS",
                  f"{p['email']} signed in as {login!r} ({auth}, status {st}), not as {p['login']}")
            check(notice == "no change", f"{p['login']}'s sign-in changed its operator: {notice}")
    ops = bench.operators()
    users = bench.ims_users()
    was, now = check_same_people(before, ops)
    user_by_email = {email_key(u["email"]): u for u in users}
    expected = {}
    linked = Counter()
    for login, o in now.items():
        if login in planned:
            p = planned[login]
            check(o["auth_type"] == "ims" and o.get("ims_id"),
                  f"{login}: planned, but {o['auth_type']} linked to {o.get('ims_id')}")
            u = user_by_email.get(email_key(o["email"]))
            check(u is not None and u["id"] == o["ims_id"],
                  f"{login}: linked to {o['ims_id']}, the IMS user of {o['email']} is {u and u['id']}")
            check(u["status"] == "active", f"{login}: its IMS user is {u['status']}")
            groups = {captured(mask, n) for n in p["profiles"]}
            check(groups == set(o["groups"]), f"{login}: planned profiles {p['profiles']} for groups {o['groups']}")
            expected[email_key(o["email"])] = set(p["profiles"])
            linked[o["ims_id"]] += 1
        else:
            w = was[login]
            check(o["auth_type"] == w["auth_type"] and o.get("ims_id") == w.get("ims_id"),
                  f"{login}: not planned, but now {o['auth_type']} linked to {o.get('ims_id')}")
            if o.get("ims_id"):
                linked[o["ims_id"]] += 1
    twice = [i for i, n in linked.items() if n > 1]
    check(not twice, f"IMS users linked by two operators: {twice[:10]}")
    check_users(before, users, mask, expected)
    # 6. Both sides agree, the journal says the plan is done.
    code, st = bench.status()
    r = st["reconciliation"]
    n = len(planned)
    check(code == 0 and r["differences"] == [] and r["linked_operators"] == n and r["matching"] == n
          and r["not_linked_yet"] == [] and r["ims_users_with_access"] == n,
          f"reconciliation (exit {code}): linked {r['linked_operators']}, matching {r['matching']}, with access "
          f"{r['ims_users_with_access']}, differences {r['differences'][:3]}, not linked {r['not_linked_yet'][:5]}")
    # 8. Each person moved once since the run began.
    moved = Counter(x["target"] for x in bench.migrations_since(since_ms, n) if x["details"].get("to") == "ims")
    check(set(moved) == set(planned) and all(v == 1 for v in moved.values()),
          f"moves since the run began: {len(moved)} people, {sum(moved.values())} moves, "
          f"twice {[k for k, v in moved.items() if v > 1][:10]}, not moved {sorted(set(planned) - set(moved))[:10]}")
    return st


def check_back(bench, before, people, mask, refused, since_ms):
    """After the rollback: every operator as it was before (native, unlinked), no user holding
    the instance's profiles, nobody reaching the instance through the IMS, each put back once."""
    for p in refused:
        st, what, _, _ = bench.sign_in(p["email"])
        check(st == 403, f"{p['login']} still reaches the instance through the IMS after the rollback: {st} {what}")
    ops = bench.operators()
    was, now = check_same_people(before, ops)
    for login, o in now.items():
        w = was[login]
        check(o["auth_type"] == w["auth_type"] and o.get("ims_id") == w.get("ims_id"),
              f"{login}: after the rollback {o['auth_type']} linked to {o.get('ims_id')}, was {w['auth_type']}")
    check_users(before, bench.ims_users(), mask, {})
    code, st = bench.status()
    r = st["reconciliation"]
    check(code == 0 and r["linked_operators"] == 0 and r["differences"] == [] and r["not_linked_yet"] == []
          and r["ims_users_with_access"] == 0, f"reconciliation after the rollback (exit {code}): {r}")
    back = Counter(x["target"] for x in bench.migrations_since(since_ms, len(people))
                   if x["details"].get("to") == "native")
    logins = {p["login"] for p in people}
    check(set(back) == logins and all(v == 1 for v in back.values()),
          f"put back since the rollback began: {len(back)} people, {sum(back.values())} moves, "
          f"twice {[k for k, v in back.items() if v > 1][:10]}")


# -- where a run stopped, from the journal ------------------------------------------------------

def stage_of(st, plan_id, n):
    """The stage the journal shows the killed apply in. `done` counts identity steps (up to n)
    then switch steps; `started` steps were begun and never recorded as ended."""
    plan = next((p for p in st["plans"] if p["plan_id"] == plan_id), None)
    if plan is None:
        return "before-plan-stored"
    if plan["applied_at"] is not None:
        return "after-applied"
    done, started = plan["done"], plan["started"]
    in_flight = "acting" if started else "between-batches"
    if done == 0 and started == 0:
        return "plan-stored"
    if done < n:
        return f"identities/{in_flight}"
    if done == n and started == 0:
        return "users-read"
    if done < 2 * n:
        return f"switch/{in_flight}"
    return "switch/all-ended"


def rollback_stage(st, since_ms):
    """Where a killed rollback stopped: its journal record (the newest rollback plan)."""
    plans = [p for p in st["plans"] if p["phase"] == "rollback" and p["created_at"] >= since_ms]
    if not plans:
        return "before-recorded"
    p = plans[-1]
    if p["applied_at"] is not None:
        return "after-applied"
    # Its steps: an unassign (IMS side) then a native (instance side) per person, by batches.
    in_flight = "acting" if p["started"] else "between-batches"
    return f"batch/{in_flight} (steps done {p['done']})"


# -- one kill ---------------------------------------------------------------------------------

def run_killed(bench, argv, delay, kill_server, timeout):
    """Starts `argv`, kills it (or the server) `delay` seconds in. Returns what was killed:
    `engine`, `ims up`, or `none` when the command finished before that moment."""
    out = open(os.path.join(bench.work, "killed.out"), "wb")
    proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    try:
        proc.wait(timeout=delay)
        return "none"
    except subprocess.TimeoutExpired:
        pass
    if kill_server:
        bench.kill_server()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise Failure(f"the engine hung for {timeout} s after `ims up` was killed")
        bench.start_server()
        return "ims up"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return "engine" if proc.returncode == -signal.SIGKILL else "none"


def resume(bench, argv, done, timeout):
    """Runs `argv` again until it succeeds; the number of runs it took."""
    for attempt in range(1, MAX_RESUMES + 1):
        p = bench.run(argv, ok=False, timeout=timeout)
        if p.returncode == 0 and done(p.stdout):
            return attempt, p.stdout
        last = p
    raise Failure(f"not finished after {MAX_RESUMES} resumes: exit {last.returncode}\n{last.stderr[-3000:]}\n"
                  f"{last.stdout[-2000:]}")


def timed(f):
    t = time.monotonic()
    v = f()
    return v, time.monotonic() - t


def main():
    ims = sys.argv[1]
    operators = int(os.environ.get("OPERATORS", "10000"))
    runs = int(os.environ.get("RUNS", "200"))
    seed = int(os.environ.get("SEED", "20261127"))
    sample_size = int(os.environ.get("SAMPLE", "20"))
    probes_n = int(os.environ.get("PROBES", "100"))
    server_every = int(os.environ.get("SERVER_KILL_EVERY", "10"))
    rollback_every = int(os.environ.get("ROLLBACK_KILL_EVERY", "3"))
    per_run_journal = os.environ.get("JOURNAL", "per-run") == "per-run"
    rng = random.Random(seed)
    work = tempfile.mkdtemp(prefix="ims-crash-")
    # A copy, so that a build during the hour this takes does not change the binary under the
    # runs; named `ims`, the name by which the command line recognises the running `ims up` it
    # signals to reload a configuration.
    shutil.copy2(ims, os.path.join(work, "ims"))
    ims = os.path.join(work, "ims")
    bench = Bench(ims, work)
    journal = "per run" if per_run_journal else "shared"
    say(f"crash matrix: {operators} operators seeded, {runs} runs, seed {seed}, journal {journal}; "
        f"work in {work}")
    failed = True
    try:
        bench.start_server()
        bench.run(bench.cmd("instance", "seed", "--data-dir", bench.data, "--instance", INSTANCE,
                            "--operators", str(operators)))
        # The console offers "Connect with IMS" (the sign-in check goes through it).
        bench.run(bench.cmd("instance", "ims-config", "--data-dir", bench.data, "--instance", INSTANCE, "--register"))
        bench.migrate("prepare", "--profiles")
        pristine = bench.snapshot()

        # Calibration: a whole apply and rollback, twice. The first creates the IMS users (later
        # runs find them); the probes get a password and sign in once in between (a sign-in
        # changes nothing: their profiles give the rights of their groups, which hold them).
        plan_file = os.path.join(work, "users.json")
        for cycle in (1, 2):
            if per_run_journal:
                bench.journal = f"sqlite://{work}/journal-calibration-{cycle}.db"
            bench.migrate("plan", "users", "--out", plan_file)
            with open(plan_file) as f:
                plan = json.load(f)
            _, t_apply = timed(lambda: bench.migrate("apply", plan_file, "--json"))
            if cycle == 1:
                people = plan["people"]
                probes = random.Random(seed ^ 0x5EED).sample(people, min(probes_n, len(people)))
                bench.set_passwords(p["email"] for p in probes)
                for p in probes:
                    st, login, _, _ = bench.sign_in(p["email"])
                    check(st == 200 and login == p["login"], f"probe {p['login']}: signed in as {login} ({st})")
            _, t_rollback = timed(lambda: bench.migrate("rollback", "--plan", plan["plan_id"], "--json"))
            say(f"calibration {cycle}: {len(plan['people'])} people, apply {t_apply:.1f} s, "
                f"rollback {t_rollback:.1f} s")
        # The kills are drawn as seeded fractions of these durations: giving the durations of an
        # earlier run replays its kills at the same moments.
        t_apply = float(os.environ.get("APPLY_SECS", t_apply))
        t_rollback = float(os.environ.get("ROLLBACK_SECS", t_rollback))
        say(f"kills drawn over apply {t_apply:.2f} s, rollback {t_rollback:.2f} s (APPLY_SECS, ROLLBACK_SECS)")
        before = bench.snapshot()
        mask = plan["mask"]
        logins = sorted(p["login"] for p in people)
        # The calibration itself lost nothing: everyone as seeded, the probes (who signed in
        # through the IMS and were rolled back) included.
        p0, b0 = by_login(pristine["operators"]), by_login(before["operators"])
        check(set(p0) == set(b0), "the calibration lost or added operators")
        for login, o in b0.items():
            w = p0[login]
            check((o["email"], sorted(o["groups"]), sorted(o["rights"]), o["disabled"], o["auth_type"],
                   o.get("ims_id")) ==
                  (w["email"], sorted(w["groups"]), sorted(w["rights"]), w["disabled"], w["auth_type"],
                   w.get("ims_id")),
                  f"the calibration changed {login}: {w} -> {o}")
        check(len(before["users"]) == len(pristine["users"]) + len(people),
              f"IMS users: {len(pristine['users'])} before, {len(before['users'])} after moving {len(people)}")

        kills, stages, rb_stages, resumes, rb_resumes_n = Counter(), Counter(), Counter(), Counter(), Counter()
        t_runs = []
        say("run  killed   delay    apply stopped in            resumes  rollback: killed @delay / stopped in"
            "            resumes  secs  invariants")
        for run in range(1, runs + 1):
            t0 = time.monotonic()
            kill_server = rng.randrange(server_every) == 0
            delay = rng.uniform(0.0, t_apply)
            kill_rollback = rng.randrange(rollback_every) == 0
            rb_server = rng.randrange(server_every) == 0
            rb_delay = rng.uniform(0.0, t_rollback)
            sample = rng.sample(probes, min(sample_size, len(probes)))
            refused = rng.sample(probes, min(3, len(probes)))
            if per_run_journal:
                bench.journal = f"sqlite://{work}/journal-{run}.db"
            since = int(time.time() * 1000)
            bench.migrate("plan", "users", "--out", plan_file)
            with open(plan_file) as f:
                plan = json.load(f)
            check(sorted(p["login"] for p in plan["people"]) == logins,
                  f"run {run}: the plan moves {len(plan['people'])} people, not the {len(logins)} expected")
            apply = bench.migrate_args("apply", plan_file, "--json")
            killed = run_killed(bench, apply, delay, kill_server, timeout=max(120, 10 * t_apply))
            stage = stage_of(bench.status()[1], plan["plan_id"], len(plan["people"])) \
                if killed != "none" else "-"
            n_resumes, out = resume(bench, apply, lambda o: json.loads(o)["complete"], timeout=max(600, 20 * t_apply))
            check_moved(bench, before, plan["people"], mask, sample, since)
            # 7. Applied again: nothing written anywhere.
            seen = bench.newest_audit()
            again = json.loads(bench.migrate("apply", plan_file, "--json").stdout)
            check(again["complete"] and again["identities"] == 0 and again["switched"] == 0
                  and again["already"] == len(plan["people"]), f"applied again: {again}")
            check(bench.newest_audit() == seen, "applying the finished plan again wrote to an audit log")
            # Everyone back, for the next run.
            rb_since = int(time.time() * 1000)
            rollback = bench.migrate_args("rollback", "--plan", plan["plan_id"], "--json")
            rb_killed, rb_stage = "-", "-"
            if kill_rollback:
                rb_killed = run_killed(bench, rollback, rb_delay, rb_server, timeout=max(120, 10 * t_rollback))
                if rb_killed != "none":
                    rb_stage = rollback_stage(bench.status()[1], rb_since)
            rb_resumes, _ = resume(bench, rollback, lambda o: json.loads(o)["failed"] == [],
                                   timeout=max(600, 20 * t_rollback))
            check_back(bench, before, plan["people"], mask, refused, rb_since)
            secs = time.monotonic() - t0
            t_runs.append(secs)
            kills[killed] += 1
            stages[stage] += 1
            resumes[n_resumes] += 1
            rb_resumes_n[rb_resumes] += 1
            if kill_rollback:
                kills["rollback: " + rb_killed] += 1
                rb_stages[rb_stage.split(" (")[0]] += 1
            rb = f"{rb_killed} @{rb_delay:.2f}s / {rb_stage}" if kill_rollback else "-"
            say(f"{run:>3}  {killed:<6}  {delay:6.2f}s  {stage:<26}  {n_resumes:>7}  {rb:<44}  {rb_resumes:>7}  "
                f"{secs:4.0f}  OK")
        failed = False
        say("")
        counts = lambda c: ", ".join(f"{k} {v}" for k, v in sorted(c.items()))  # noqa: E731
        say(f"summary: {runs} runs, {operators} operators seeded ({len(people)} people moved and put back per run), "
            f"seed {seed}")
        say("  kills (none: the command finished before the drawn moment): " + counts(kills))
        say("  apply stopped in: " + counts(stages))
        if rb_stages:
            say("  rollback stopped in: " + counts(rb_stages))
        resumed = lambda c: ", ".join(f"{k} in {v} runs" for k, v in sorted(c.items()))  # noqa: E731
        say("  apply commands needed after the kill to finish: " + resumed(resumes))
        say("  rollback commands needed after the kill to finish: " + resumed(rb_resumes_n))
        say(f"  invariant failures: 0; seconds per run: mean {sum(t_runs) / max(1, len(t_runs)):.1f}, "
            f"max {max(t_runs, default=0):.1f}")
    except (Failure, Exception) as e:  # anything unexpected is kept for inspection too
        kind = "INVARIANT FAILED" if isinstance(e, Failure) else f"STOPPED ({type(e).__name__})"
        say(f"\n{kind}: {e}")
        say(f"evidence kept in {work} (data/: the ims up data directory; restart it with "
            f"`{ims} up --data-dir {bench.data} --port-base {bench.port} --plain-http`; up.log; "
            "journal-*.db; users.json)")
    finally:
        bench.stop_server()
        if not failed:
            shutil.rmtree(work, ignore_errors=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
