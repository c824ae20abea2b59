"""User Management API load: fills an organisation through the action endpoint, 10 entries per
request as the vendor's clients send them (create a user and add it to a product profile and a
user group), and reports entries per second for each slice of users added. The rate must not
fall as the organisation grows (no per-request cost that grows with the data).

usage: load.py BASE ORG CLIENT_ID SECRET PROFILE TOTAL SLICE THREADS"""
import concurrent.futures
import json
import sys
import time
import urllib.request

base, org, client_id, secret, profile, total, slice_size, threads = sys.argv[1:9]
total, slice_size, threads = int(total), int(slice_size), int(threads)


def post(url, data, headers):
    req = urllib.request.Request(url, data=data, headers=headers, method="POST")
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read())


token = post(base + "/ims/token/v3", f"grant_type=client_credentials&client_id={client_id}&client_secret={secret}&scope=openid,user_management_sdk".encode(),
             {"content-type": "application/x-www-form-urlencoded"})["access_token"]
headers = {"authorization": "Bearer " + token, "x-api-key": client_id, "content-type": "application/json"}
post(f"{base}/v2/usermanagement/action/{org}", json.dumps([{"usergroup": "bench-group", "do": [{"createUserGroup": {"option": "ignoreIfAlreadyExists"}}]}]).encode(), headers)


def batch(start):
    entries = [{"user": f"u{i}@bench.example", "do": [
        {"createEnterpriseID": {"email": f"u{i}@bench.example", "firstname": "U", "lastname": str(i)}},
        {"add": {"group": [profile, "bench-group"]}}]} for i in range(start, start + 10)]
    out = post(f"{base}/v2/usermanagement/action/{org}", json.dumps(entries).encode(), headers)
    if out.get("completed") != 10:
        raise SystemExit(f"batch {start} failed: {out}")


rows = []
with concurrent.futures.ThreadPoolExecutor(threads) as pool:
    for first in range(0, total, slice_size):
        started = time.monotonic()
        list(pool.map(batch, range(first, first + slice_size, 10)))
        elapsed = time.monotonic() - started
        rows.append((first + slice_size, slice_size / elapsed))
for users, rate in rows:
    print(f"users {users:>7}  entries/s {rate:8.1f}")
print(f"last/first slice rate ratio {rows[-1][1] / rows[0][1]:.2f}")
