"""umapi-client 3.0.1 and umapi-cli 2.2.0, unmodified, against the User Management API of a
running `ims up` (started with a small page size and a per-client budget, so paging and
throttling show)."""
import csv
import io
import json
import os
import subprocess
import time
import uuid

import requests
import umapi_client
from umapi_client import GroupAction, GroupsQuery, UserAction, UserQuery, UsersQuery

UP = json.load(open(os.environ["INTEROP_UP_JSON"]))
CRED = json.load(open(os.environ["INTEROP_UMAPI_CREDENTIAL"]))
THROTTLED = json.load(open(os.environ["INTEROP_UMAPI_THROTTLED_CREDENTIAL"]))
PAGE_SIZE = int(os.environ["INTEROP_UMAPI_PAGE_SIZE"])
PER_MINUTE = int(os.environ["INTEROP_UMAPI_PER_MINUTE"])
PROFILE = os.environ["INTEROP_UMAPI_PROFILE"]
CA = UP["ca_cert"]
HOST = UP["ims_url"].removeprefix("https://")
ENDPOINT = UP["ims_url"] + "/v2/usermanagement"
RUN = uuid.uuid4().hex[:8]


def connection(cred=CRED, test_mode=False):
    auth = umapi_client.OAuthS2S(cred["client_id"], cred["client_secret"], auth_host=HOST, ssl_verify=CA)
    return umapi_client.Connection(org_id=UP["org_id"], auth=auth, endpoint=ENDPOINT, ssl_verify=CA,
                                   test_mode=test_mode)


def email(name):
    return f"{name}.{RUN}@example.com"


def test_create_users_of_each_type_then_list_them_across_pages():
    conn = connection()
    created = []
    for kind, name in [("adobeID", "ada"), ("enterpriseID", "eve"), ("federatedID", "fed")]:
        u = UserAction(email(name))
        u.create(email=email(name), firstname=name.title(), lastname="Interop", country="FR", id_type=kind)
        queued, sent, completed = conn.execute_single(u, immediate=True)
        assert (sent, completed) == (1, 1), u.execution_errors()
        created.append((email(name), kind))
    # Enough users for several pages.
    actions = []
    for i in range(2 * PAGE_SIZE):
        u = UserAction(email(f"bulk{i}"))
        u.create(email=email(f"bulk{i}"), firstname="Bulk", lastname=str(i), id_type="enterpriseID")
        actions.append(u)
    _, sent, completed = conn.execute_multiple(actions)
    assert sent == completed == len(actions)
    users = UsersQuery(conn).all_results()
    by_email = {u["email"]: u for u in users}
    assert len(users) == len(by_email), "no user twice across pages"
    for address, kind in created:
        assert by_email[address]["type"] == kind
        assert by_email[address]["status"] == "active"
    assert by_email[email("fed")]["country"] == "FR"
    assert all(email(f"bulk{i}") in by_email for i in range(2 * PAGE_SIZE))
    # The client really paged: more users than one page holds.
    assert len(users) > 2 * PAGE_SIZE


def test_read_one_user_and_a_missing_one():
    conn = connection()
    u = UserAction(email("single"))
    u.create(email=email("single"), firstname="Sin", lastname="Gle", id_type="enterpriseID")
    conn.execute_single(u, immediate=True)
    found = UserQuery(conn, email("single")).result()
    assert found["email"] == email("single") and found["firstname"] == "Sin"
    assert UserQuery(conn, email("nobody")).result() == {}, "404 means not found"


def test_groups_add_remove_and_a_new_user_group_across_pages():
    conn = connection()
    groups = [f"interop-{RUN}-{i}" for i in range(PAGE_SIZE + 2)]
    for g in groups:
        action = GroupAction(group_name=g)
        action.create(description="made by the interop suite")
        conn.execute_single(action, immediate=True)
        assert not action.execution_errors(), action.execution_errors()
    listed = {g["groupName"]: g for g in GroupsQuery(conn).all_results()}
    assert all(g in listed for g in groups), "every group, across pages"
    assert listed[groups[0]]["type"] == "USER_GROUP"
    assert listed[PROFILE]["type"] == "PRODUCT_PROFILE"

    u = UserAction(email("member"))
    u.create(email=email("member"), firstname="Mem", lastname="Ber", id_type="enterpriseID")
    u.add_to_groups(groups=[groups[0], groups[1], PROFILE])
    conn.execute_single(u, immediate=True)
    assert not u.execution_errors(), u.execution_errors()
    assert sorted(UserQuery(conn, email("member")).result()["groups"]) == sorted([groups[0], groups[1], PROFILE])
    members = UsersQuery(conn, in_group=groups[0]).all_results()
    assert [m["email"] for m in members] == [email("member")]

    u = UserAction(email("member"))
    u.remove_from_groups(groups=[groups[1]])
    conn.execute_single(u, immediate=True)
    assert groups[1] not in UserQuery(conn, email("member")).result()["groups"]
    u = UserAction(email("member"))
    u.remove_from_groups(all_groups=True)
    conn.execute_single(u, immediate=True)
    assert UserQuery(conn, email("member")).result()["groups"] == []

    # A user group linked to the profile gives its members the profile (shown unless directOnly).
    g = GroupAction(group_name=groups[2])
    g.add_users([email("member")])
    g.add_to_products([PROFILE])
    conn.execute_single(g, immediate=True)
    assert not g.execution_errors(), g.execution_errors()
    inherited = UsersQuery(conn, in_group=PROFILE, direct_only=False).all_results()
    assert email("member") in [m["email"] for m in inherited]
    direct = UsersQuery(conn, in_group=PROFILE).all_results()
    assert email("member") not in [m["email"] for m in direct]


def test_remove_from_org():
    conn = connection()
    u = UserAction(email("leaver"))
    u.create(email=email("leaver"), firstname="Lea", lastname="Ver", id_type="enterpriseID")
    conn.execute_single(u, immediate=True)
    u = UserAction(email("leaver"))
    u.remove_from_organization(delete_account=True)
    conn.execute_single(u, immediate=True)
    assert not u.execution_errors()
    assert UserQuery(conn, email("leaver")).result() == {}
    assert email("leaver") not in [x["email"] for x in UsersQuery(conn).all_results()]


def test_errors_carry_index_and_step():
    conn = connection()
    ok = UserAction(email("fine"))
    ok.create(email=email("fine"), firstname="Fi", lastname="Ne", id_type="enterpriseID")
    bad = UserAction(email("fine2"))
    bad.create(email=email("fine2"), firstname="Fi", lastname="Ne", id_type="enterpriseID")
    bad.add_to_groups(groups=[f"no-such-group-{RUN}"])
    queued, sent, completed = conn.execute_multiple([ok, bad])
    assert (sent, completed) == (2, 1)
    assert ok.execution_errors() == []
    errors = bad.execution_errors()
    assert len(errors) == 1 and errors[0]["errorCode"] == "error.group.not_found", errors
    # The create step of the failed entry is undone with it.
    assert UserQuery(conn, email("fine2")).result() == {}


def test_test_mode_changes_nothing():
    conn = connection(test_mode=True)
    u = UserAction(email("dry"))
    u.create(email=email("dry"), firstname="D", lastname="Ry", id_type="enterpriseID")
    _, sent, _ = conn.execute_single(u, immediate=True)
    assert sent == 1 and not u.execution_errors()
    assert UserQuery(connection(), email("dry")).result() == {}


def test_a_429_is_survived_by_waiting_for_retry_after():
    raw = requests.post(UP["ims_url"] + "/ims/token/v3", verify=CA, data={
        "grant_type": "client_credentials", "client_id": THROTTLED["client_id"],
        "client_secret": THROTTLED["client_secret"], "scope": "openid,AdobeID,user_management_sdk"}).json()
    headers = {"Authorization": "Bearer " + raw["access_token"], "x-api-key": THROTTLED["client_id"]}
    url = f"{ENDPOINT}/groups/{UP['org_id']}/0"
    # The budget refills while the loop runs: spend it until the answer is 429.
    for _ in range(3 * PER_MINUTE):
        limited = requests.get(url, headers=headers, verify=CA)
        if limited.status_code != 200:
            break
    assert limited.status_code == 429, limited.text
    assert int(limited.headers["Retry-After"]) >= 1
    assert limited.json()["error_code"] == "429050"
    # The client, on the same budget, waits as told and gets its answer.
    started = time.monotonic()
    groups = GroupsQuery(connection(THROTTLED)).all_results()
    assert groups and time.monotonic() - started >= 0.5


def umapi_cli(*args):
    env = dict(os.environ, UMAPI_CLIENT_ID=CRED["client_id"], UMAPI_CLIENT_SECRET=CRED["client_secret"],
               UMAPI_ORG_ID=UP["org_id"], UMAPI_AUTH_HOST=HOST, UMAPI_URL=ENDPOINT, REQUESTS_CA_BUNDLE=CA)
    out = subprocess.run([os.environ["INTEROP_UMAPI_CLI"], *args], capture_output=True, text=True, env=env,
                         timeout=120, check=True)
    assert "ERROR" not in out.stdout, out.stdout
    return out.stdout


def test_umapi_cli_reads_every_user_as_json_and_csv():
    expected = {u["email"] for u in UsersQuery(connection()).all_results()}
    # One JSON document per line.
    as_json = [json.loads(line) for line in umapi_cli("user-read-all", "--format", "json").splitlines() if line]
    assert {u["email"] for u in as_json} == expected
    rows = list(csv.DictReader(io.StringIO(umapi_cli("user-read-all", "--format", "csv"))))
    assert {r["email"] for r in rows} == expected
