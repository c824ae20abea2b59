"""Authlib's OAuth 2.0 client, unmodified, signs a person in against `ims up`: authorization code
with PKCE, the sign-in form posted with requests (no browser), ID token validation, userinfo,
refresh, RP-initiated logout."""
import json
import os
import re

import requests
from authlib.integrations.requests_client import OAuth2Session
from authlib.jose import JsonWebKey, jwt
from authlib.oidc.core import CodeIDToken

UP = json.load(open(os.environ["INTEROP_UP_JSON"]))
APP = json.load(open(os.environ["INTEROP_PEOPLE_CONFIDENTIAL"]))
PERSON = json.load(open(os.environ["INTEROP_PERSON"]))
CA = UP["ca_cert"]
# Never contacted: the redirect is read from the Location header. Any loopback port matches the
# registered http://127.0.0.1/authlib.
REDIRECT = "http://127.0.0.1:9/authlib"


def browser():
    s = requests.Session()
    s.trust_env = False  # the machine's CA bundle variables would override ours
    s.verify = CA
    return s


def csrf(html):
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


def test_authlib_code_flow_with_pkce_id_token_userinfo_refresh_and_logout():
    meta = browser().get(UP["ims_url"] + "/.well-known/openid-configuration").json()
    client = OAuth2Session(
        APP["client_id"], APP["client_secret"], scope="openid email profile",
        redirect_uri=REDIRECT, code_challenge_method="S256",
        token_endpoint_auth_method="client_secret_basic",
    )
    client.trust_env = False
    client.verify = CA
    verifier = "v" * 20 + os.urandom(24).hex()
    url, state = client.create_authorization_url(meta["authorization_endpoint"], code_verifier=verifier, nonce="n-authlib")

    b = browser()
    page = b.get(url)
    assert page.status_code == 200 and "/ims/signin/" in page.url
    assert page.headers["Referrer-Policy"] == "no-referrer"
    step = b.post(page.url, data={"csrf": csrf(page.text), "email": PERSON["email"]})
    assert step.history[0].status_code == 303
    done = b.post(step.url, data={"csrf": csrf(step.text), "password": PERSON["password"]}, allow_redirects=False)
    assert done.status_code == 303, done.text
    callback = done.headers["Location"]
    assert callback.startswith(REDIRECT)

    token = client.fetch_token(meta["token_endpoint"], authorization_response=callback, code_verifier=verifier)
    keys = JsonWebKey.import_key_set(browser().get(meta["jwks_uri"]).json())
    claims = jwt.decode(
        token["id_token"], keys, claims_cls=CodeIDToken,
        claims_options={"iss": {"essential": True, "value": meta["issuer"]}},
        claims_params={"nonce": "n-authlib", "client_id": APP["client_id"]},
    )
    claims.validate()
    assert claims["sub"] == PERSON["user_id"]

    info = client.get(meta["userinfo_endpoint"]).json()
    assert info["sub"] == claims["sub"] and info["email"] == PERSON["email"]

    old = token["refresh_token"]
    renewed = client.refresh_token(meta["token_endpoint"], refresh_token=old)
    assert renewed["refresh_token"] != old

    out = b.get(meta["end_session_endpoint"], params={
        "id_token_hint": token["id_token"], "post_logout_redirect_uri": REDIRECT, "state": "bye",
    }, allow_redirects=False)
    assert out.status_code == 303 and out.headers["Location"] == REDIRECT + "?state=bye"
    again = b.get(client.create_authorization_url(meta["authorization_endpoint"], code_verifier=verifier, prompt="none")[0], allow_redirects=False)
    assert "error=login_required" in again.headers["Location"]
