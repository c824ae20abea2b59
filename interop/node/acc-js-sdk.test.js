// @adobe/acc-js-sdk, unmodified, against the instance `ims up` runs: native sign-in, the server
// test and ping, sign-off, and the structured error of a refused sign-in.
const { test } = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const sdk = require('@adobe/acc-js-sdk')

const up = JSON.parse(fs.readFileSync(process.env.INTEROP_UP_JSON, 'utf8'))
const instance = up.instances.find((i) => i.name === 'marketing')

test('user and password: logon, test, ping, logoff', async () => {
  const client = await sdk.init(sdk.ConnectionParameters.ofUserAndPassword(instance.url, instance.admin_login, instance.admin_password))
  await client.logon()
  assert.equal(client.isLogged(), true)
  const info = client.getSessionInfo('SimpleJson')
  assert.equal(info.userInfo.login, 'admin')
  assert.equal(info.serverInfo.instanceName, 'marketing')
  const t = await client.test()
  assert.equal(t.status, 'OK')
  assert.equal(t.instance, 'marketing')
  assert.equal(t.version, instance.build)
  const p = await client.ping()
  assert.equal(p.status, 'OK')
  await client.logoff()
  assert.equal(client.isLogged(), false)
})

test('rememberMe is accepted', async () => {
  const client = await sdk.init(sdk.ConnectionParameters.ofUserAndPassword(instance.url, instance.admin_login, instance.admin_password, { rememberMe: true }))
  await client.logon()
  await client.logoff()
})

test('a wrong password is the SDK structured error with the code', async () => {
  const client = await sdk.init(sdk.ConnectionParameters.ofUserAndPassword(instance.url, instance.admin_login, 'not the password'))
  await assert.rejects(client.logon(), (e) => {
    assert.equal(e.errorCode, 'XSV-350024')
    assert.match(e.faultString, /Invalid login or password/)
    return true
  })
})

test('bearer logon with a token from the IMS token service', async () => {
  const cred = JSON.parse(fs.readFileSync(process.env.INTEROP_CREDENTIAL, 'utf8'))
  const form = new URLSearchParams({ grant_type: 'client_credentials', client_id: cred.client_id, client_secret: cred.client_secret, scope: 'openid' })
  const res = await fetch(`${up.ims_url}/ims/token/v3`, { method: 'POST', body: form })
  assert.equal(res.status, 200)
  const token = (await res.json()).access_token
  const client = await sdk.init(sdk.ConnectionParameters.ofBearerToken(instance.url, token))
  await client.logon()
  const info = client.getSessionInfo('SimpleJson')
  assert.equal(info.userInfo.login, cred.technical_account_email, 'the technical account operator, created at its first call')
  assert.equal((await client.ping()).status, 'OK')
  await client.logoff()
  // A tampered token takes the SDK's session-expired path.
  const forged = await sdk.init(sdk.ConnectionParameters.ofBearerToken(instance.url, token.slice(0, -4) + 'AAAA'))
  await assert.rejects(forged.logon(), (e) => {
    assert.equal(e.errorCode, 'SDK-000012', 'the SDK\'s SESSION_EXPIRED')
    assert.equal(e.statusCode, 401)
    return true
  })
})
