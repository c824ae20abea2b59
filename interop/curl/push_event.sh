#!/usr/bin/env bash
# The vendor's documented PushEvent calls with curl, before and after the migration: first with a
# session token from Logon, then with an IMS access token in Authorization: Bearer and an empty
# sessiontoken parameter. Then mcPing. Needs INTEROP_UP_JSON and INTEROP_CAMPAIGN_CREDENTIAL
# (a credential subscribed to the Campaign API).
set -euo pipefail
json() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))" "$@"; }
up="$INTEROP_UP_JSON"
ca=$(json "$up" 'd["ca_cert"]')
mc=$(json "$up" '[i for i in d["instances"] if i["name"]=="mc"][0]["url"]')
password=$(json "$up" '[i for i in d["instances"] if i["name"]=="mc"][0]["admin_password"]')
ims=$(json "$up" 'd["ims_url"]')
fail() { echo "FAIL: $*"; exit 1; }

logon='<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:urn="urn:xtk:session"><soapenv:Header/><soapenv:Body><urn:Logon><urn:sessiontoken/><urn:strLogin>admin</urn:strLogin><urn:strPassword>'"$password"'</urn:strPassword><urn:elemParameters/></urn:Logon></soapenv:Body></soapenv:Envelope>'
answer=$(curl -s --cacert "$ca" "$mc/nl/jsp/soaprouter.jsp" -H 'Content-Type: text/xml; charset=utf-8' -H 'SOAPAction: xtk:session#Logon' -d "$logon")
session=$(sed -n "s/.*<pstrSessionToken xsi:type='xsd:string'>\([^<]*\)<.*/\1/p" <<<"$answer")
security=$(sed -n "s/.*<pstrSecurityToken xsi:type='xsd:string'>\([^<]*\)<.*/\1/p" <<<"$answer")
[ -n "$session" ] || fail "no session token: $answer"

push() { # $1 sessiontoken parameter, then extra curl arguments
  local st=$1; shift
  curl -s --cacert "$ca" "$mc/nl/jsp/soaprouter.jsp" -H 'Content-Type: text/xml; charset=utf-8' \
    -H 'SOAPAction: nms:rtEvent#PushEvent' "$@" \
    -d '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:urn="urn:nms:rtEvent"><soapenv:Header/><soapenv:Body><urn:PushEvent><urn:sessiontoken>'"$st"'</urn:sessiontoken><urn:domEvent><rtEvent type="ORDER_CONFIRMATION" email="jane@example.com"><ctx><orderId>A-17</orderId></ctx></rtEvent></urn:domEvent></urn:PushEvent></soapenv:Body></soapenv:Envelope>'
}

before=$(push "$session" -H "X-Security-Token: $security" -H "Cookie: __sessiontoken=$session")
grep -q "<plId xsi:type='xsd:long'>[0-9]" <<<"$before" || fail "PushEvent with a session token: $before"
echo "PushEvent with a session token: ok"

client_id=$(json "$INTEROP_CAMPAIGN_CREDENTIAL" 'd["client_id"]')
client_secret=$(json "$INTEROP_CAMPAIGN_CREDENTIAL" 'd["client_secret"]')
token=$(curl -s --cacert "$ca" "$ims/ims/token/v3" -d grant_type=client_credentials -d client_id="$client_id" -d client_secret="$client_secret" -d scope=openid,AdobeID,additional_info.projectedProductContext | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
after=$(push "" -H "Authorization: Bearer $token")
grep -q "<plId xsi:type='xsd:long'>[0-9]" <<<"$after" || fail "PushEvent with a bearer token: $after"
echo "PushEvent with Authorization: Bearer: ok"

both=$(push "$session" -H "Authorization: Bearer $token")
grep -q "Fault" <<<"$both" || fail "a bearer token and a session token together must be a fault: $both"
echo "bearer and session together: fault, ok"

ping=$(curl -s --cacert "$ca" "$mc/nl/jsp/mcPing.jsp")
head -n1 <<<"$ping" | grep -q '^Ok$' || fail "mcPing: $ping"
grep -q 'pending events' <<<"$ping" || fail "mcPing: $ping"
echo "mcPing: ok"
echo "4 passed, 0 failed"
