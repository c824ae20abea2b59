"""Checks of what `ims migrate` prints as JSON, for interop/migration/run.

Each subcommand reads the files it is given, says what it checked on one line, and exits 1 with
the reason when a check fails (2 for a wrong invocation). `watch-in` is a question, not a check:
exit 0 when every watched operator is in the state, 1 otherwise, silently, for polling; so is
`watch-seen`.
"""

import csv
import json
import sys

INTEGRATIONS = ["crm-sync", "web-forms", "bi-export"]


class Failed(Exception):
    pass


def expect(cond, message):
    if not cond:
        raise Failed(message)


def load(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def by_login(assessment):
    return {o["login"]: o for o in assessment["operators"]}


def assess(path, person, instance):
    """The first assessment: its shape, the integrations seen as programs from their calls, the
    person as a person, and blockers that each name an operator, a problem and a fix."""
    a = load(path)
    for key in ["instance", "build", "counts", "operators", "blockers", "warnings", "rights_no_group_carries"]:
        expect(key in a, f"the assessment has no {key!r}: {sorted(a)}")
    expect(a["instance"] == instance, f"assessed {a['instance']}, not {instance}")
    expect(a["build"] == "7.4.1", f"build {a['build']}")
    ops = by_login(a)
    for o in a["operators"]:
        for key in ["login", "auth_type", "disabled", "email", "email_status", "groups", "rights", "api", "class", "evidence"]:
            expect(key in o, f"operator {o.get('login')} has no {key!r}")
    for login in INTEGRATIONS:
        o = ops.get(login)
        expect(o is not None, f"{login} is not in the assessment")
        expect(o["class"] == "technical", f"{login} is classified {o['class']}: {o['evidence']}")
        expect(o["auth_type"] == "native", f"{login} is {o['auth_type']}")
        expect(o["api"]["calls"] > 0 and o["api"]["sources"], f"{login}'s API usage: {o['api']}")
    if person:
        p = ops.get(person)
        expect(p is not None and p["class"] == "person", f"{person}: {p}")
        expect(p["last_native_sign_in"] is not None, f"{person}'s native sign-in was not recorded: {p}")
    expect(a["counts"]["technical_to_migrate"] == 3, f"counts: {a['counts']}")
    expect(a["counts"]["people_to_migrate"] >= 30, f"counts: {a['counts']}")
    expect(a["blockers"], "the demo population has blockers (missing and shared emails)")
    for b in a["blockers"]:
        expect(all(b.get(k) for k in ["phase", "operator", "problem", "fix"]), f"blocker without its parts: {b}")
        expect(b["operator"] in ops, f"a blocker names an unknown operator: {b}")
    return (
        f"{len(a['operators'])} operators; {a['counts']['people_to_migrate']} people and "
        f"{a['counts']['technical_to_migrate']} programs to migrate; {len(a['blockers'])} blockers"
    )


def emails(path, out):
    """Writes the CSV of emails for the people whose email blocks the end-user phase (missing, or
    shared with another operator): each gets its own, `<login>@example.com`."""
    a = load(path)
    ops = by_login(a)
    rows = []
    for b in a["blockers"]:
        if b["phase"] != "users":
            continue
        o = ops[b["operator"]]
        expect(o["email_status"] in ("missing", "duplicate", "invalid"), f"a users blocker that is not an email: {b}")
        rows.append((o["login"], f"{o['login']}@example.com"))
    expect(rows, "no email blocker to fix")
    with open(out, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["login", "email"])
        w.writerows(rows)
    return f"{len(rows)} emails for {', '.join(r[0] for r in rows)}"


def clear(path):
    """An assessment without blockers, after the emails and rights were prepared."""
    a = load(path)
    expect(a["blockers"] == [], f"blockers left: {a['blockers']}")
    return "no blocker left"


def auth_type(path, login, expected):
    """One operator's authentication type, as the assessment reads it."""
    o = by_login(load(path)).get(login)
    expect(o is not None, f"{login} is not in the assessment")
    expect(o["auth_type"] == expected, f"{login} is {o['auth_type']}, expected {expected}")
    return f"{login} is {expected}"


def users_plan(path, person, instance):
    """The end-user plan: the person in it, the programs and built-in operators not, and each
    person left out with a reason."""
    p = load(path)
    expect(p["phase"] == "users" and p["instance"] == instance, f"plan {p.get('plan_id')}")
    people = [x["login"] for x in p["people"]]
    if person:
        expect(person in people, f"{person} is not in the plan")
    for login in INTEGRATIONS + ["admin", "webapp", "internal", "monitoring"]:
        expect(login not in people, f"{login} is in the end-user plan")
    for s in p["skipped"]:
        expect(s["reason"], f"left out without a reason: {s}")
    return f"{len(people)} people to move, {len(p['skipped'])} left as they are"


def technical_plan(path, instance):
    """The technical plan: exactly the three integrations."""
    p = load(path)
    expect(p["phase"] == "technical" and p["instance"] == instance, f"plan {p.get('plan_id')}")
    programs = sorted(x["login"] for x in p["programs"])
    expect(programs == sorted(INTEGRATIONS), f"programs planned: {programs}")
    return f"programs {', '.join(programs)}"


def watch_in(path, state):
    """Every operator the technical phase moved is in `state` (exit 1 otherwise, silently)."""
    w = load(path)
    ok = sorted(x["legacy"] for x in w) == sorted(INTEGRATIONS) and all(x["state"] == state for x in w)
    sys.exit(0 if ok else 1)


def watch_seen(path):
    """Every legacy operator's native traffic since its move has been seen (it is noisy, or
    already quiet again after it); exit 1 otherwise, silently, for polling."""
    w = load(path)
    ok = sorted(x["legacy"] for x in w) == sorted(INTEGRATIONS) and all(
        x["calls_since"] > 0 and x["state"] in ("noisy", "quiet") for x in w
    )
    sys.exit(0 if ok else 1)


def watch_states(path):
    """For a failure message: each legacy operator's state."""
    return ", ".join(f"{x['legacy']} {x['state']} ({x['calls_since']} native since the move)" for x in load(path))


def status(path, users_plan_path, instance):
    """The end: locked down, complete (not forced), every phase applied, the programs' legacy
    operators gone, and the reconciliation without a single difference."""
    s = load(path)
    expect(s["instance"] == instance, f"status of {s['instance']}")
    expect(s["restrictions_on"] is True, "the lock-down is not on")
    c = s["completion"]
    expect(c is not None and c["forced"] is False, f"completion: {c}")
    phases = {p["phase"] for p in s["plans"]}
    for phase in ["users", "technical", "finalize"]:
        expect(phase in phases, f"no {phase} plan in the journal: {s['plans']}")
    for p in s["plans"]:
        if p["phase"] in ("users", "technical", "finalize"):
            expect(p["applied_at"] is not None and not p["failed"], f"plan not finished: {p}")
    expect(s["by_auth_type"].get("technical_account", 0) >= 3, f"operators: {s['by_auth_type']}")
    r = s["reconciliation"]
    expect(r is not None, "the IMS was not asked for the reconciliation")
    moved = len(load(users_plan_path)["people"])
    expect(r["differences"] == [], f"differences: {json.dumps(r['differences'], indent=1)}")
    expect(r["linked_operators"] == moved, f"{r['linked_operators']} linked operators, {moved} people moved")
    expect(r["matching"] == r["linked_operators"], f"{r['matching']} matching of {r['linked_operators']}")
    expect(r["not_linked_yet"] == [], f"IMS users with access and no operator: {r['not_linked_yet']}")
    expect(len(r["digests"]) == moved and all(d[1] == d[2] for d in r["digests"]), "digests differ")
    return (
        f"lock-down on, complete; reconciliation: {r['linked_operators']} linked, {r['matching']} matching, "
        f"0 differences, {r['ims_users_with_access']} IMS users with access, none unlinked"
    )


def people(path, users_plan_path):
    """After the end-user phase: every person the plan created was invited and accepted, and
    every moved person signed in to the instance through the IMS; `status` counts them."""
    p = load(path)["people"]
    expect(p is not None, "the status says nothing of the people (the IMS was not asked)")
    plan = load(users_plan_path)["people"]
    created = sum(1 for x in plan if not x.get("ims_user"))
    expect(p["moved"] == len(plan), f"{p['moved']} moved, the plan moved {len(plan)}")
    expect(p["invited"] >= created, f"{p['invited']} invited, the plan created {created}")
    expect(p["accepted"] == p["invited"], f"{p['accepted']} accepted of {p['invited']} invited")
    expect(p["signed_in"] == len(plan), f"{p['signed_in']} signed in through the IMS of {len(plan)} moved")
    expect(p["waiting"] == [], f"not come in: {p['waiting']}")
    return f"people: {p['moved']} moved, {p['invited']} invited, {p['accepted']} accepted, {p['signed_in']} signed in"


COMMANDS = {
    "people": people,
    "assess": assess,
    "emails": emails,
    "clear": clear,
    "auth-type": auth_type,
    "users-plan": users_plan,
    "technical-plan": technical_plan,
    "watch-in": watch_in,
    "watch-seen": watch_seen,
    "watch-states": watch_states,
    "status": status,
}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        sys.exit(f"usage: check.py {'|'.join(COMMANDS)} ARGS")
    try:
        said = COMMANDS[sys.argv[1]](*sys.argv[2:])
    except Failed as e:
        print(f"!!! FAILED: {sys.argv[1]}: {e}", file=sys.stderr)
        sys.exit(1)
    print(f"   {said}")
