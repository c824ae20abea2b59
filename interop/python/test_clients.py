"""umapi-client and Authlib, unmodified, against a running `ims up`."""
import json
import os

import requests
import umapi_client
from authlib.jose import JsonWebKey, JsonWebToken

UP = json.load(open(os.environ["INTEROP_UP_JSON"]))
CRED = json.load(open(os.environ["INTEROP_UMAPI_CREDENTIAL"]))
CA = UP["ca_cert"]
HOST = UP["ims_url"].removeprefix("https://")


def test_umapi_oauth_s2s_gets_a_token_over_https_trusting_our_ca():
    auth = umapi_client.OAuthS2S(CRED["client_id"], CRED["client_secret"], auth_host=HOST, ssl_verify=CA)
    # What the client does before every UMAPI call: fetch a token, set the headers.
    prepared = auth(requests.Request("GET", "https://example.invalid/").prepare())
    assert prepared.headers["Authorization"].startswith("Bearer ")
    assert prepared.headers["x-api-key"] == CRED["client_id"]
    token = auth.token
    claims = decode(token)
    assert claims["client_id"] == CRED["client_id"]
    assert claims["scope"] == "openid,AdobeID,user_management_sdk"
    assert auth.expiry is not None


def test_umapi_wrong_secret_raises():
    auth = umapi_client.OAuthS2S(CRED["client_id"], "imscs_wrong", auth_host=HOST, ssl_verify=CA)
    try:
        auth.refresh_token()
    except RuntimeError as e:
        assert "401" in str(e) and "invalid_client" in str(e)
    else:
        raise AssertionError("a wrong secret must be refused")


def decode(token):
    """Verifies the token with Authlib against our discovery document and JWKS."""
    discovery = requests.get(UP["ims_url"] + "/.well-known/openid-configuration", verify=CA).json()
    assert discovery["issuer"] == UP["ims_url"]
    jwks = requests.get(discovery["jwks_uri"], verify=CA).json()
    keys = JsonWebKey.import_key_set(jwks)
    claims = JsonWebToken(["RS256", "ES256", "EdDSA"]).decode(
        token, keys, claims_options={"iss": {"essential": True, "value": discovery["issuer"]}}
    )
    claims.validate()
    return claims


def test_authlib_refuses_a_forged_token():
    auth = umapi_client.OAuthS2S(CRED["client_id"], CRED["client_secret"], auth_host=HOST, ssl_verify=CA)
    auth.refresh_token()
    header, payload, signature = auth.token.split(".")
    forged = f"{header}.{payload[:-2]}AA.{signature}"
    try:
        decode(forged)
    except Exception:  # noqa: BLE001 - any refusal is the expected outcome
        return
    raise AssertionError("a forged token verified")


def test_zeep_reads_the_wsdl_and_pushes_an_event_with_a_bearer_token():
    import zeep
    from lxml import etree
    from zeep.transports import Transport

    mc = next(i for i in UP["instances"] if i["name"] == "mc")
    cred = json.load(open(os.environ["INTEROP_CAMPAIGN_CREDENTIAL"]))
    token = requests.post(
        UP["ims_url"] + "/ims/token/v3",
        data={"grant_type": "client_credentials", "client_id": cred["client_id"], "client_secret": cred["client_secret"], "scope": "openid,AdobeID,additional_info.projectedProductContext"},
        verify=CA,
    ).json()["access_token"]
    session = requests.Session()
    session.trust_env = False  # the machine's CA bundle variables would override ours
    session.verify = CA
    session.headers["Authorization"] = "Bearer " + token
    client = zeep.Client(mc["url"] + "/nl/jsp/schemawsdl.jsp?schema=nms:rtEvent", transport=Transport(session=session))
    event = etree.fromstring('<rtEvent type="ORDER_CONFIRMATION" email="zeep@example.com"><ctx><orderId>Z-1</orderId></ctx></rtEvent>')
    event_id = client.service.PushEvent(sessiontoken="", domEvent={"_value_1": event})
    assert int(event_id) > 0
