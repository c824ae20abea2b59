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
