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
  const cred = JSON.parse(fs.readFileSync(process.env.INTEROP_CAMPAIGN_CREDENTIAL, 'utf8'))
  const form = new URLSearchParams({ grant_type: 'client_credentials', client_id: cred.client_id, client_secret: cred.client_secret, scope: 'openid,AdobeID,additional_info.projectedProductContext' })
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

function operatorQuery (client, operation, extra) {
  return client.NLWS.xtkQueryDef.create(Object.assign({
    schema: 'xtk:operator',
    operation,
    select: { node: [{ expr: '@id' }, { expr: '@name' }] }
  }, extra || {})).executeQuery()
}

async function queries (client) {
  const all = await operatorQuery(client, 'select', { lineCount: 10, orderBy: { node: [{ expr: '@name' }] } })
  const names = all.operator.map((o) => o.name)
  assert.ok(names.includes('admin') && names.includes('aemserver'), names.join(','))
  assert.deepEqual([...names].sort(), names, 'ordered by name')
  const one = await operatorQuery(client, 'get', { where: { condition: [{ expr: "@name = 'admin'" }] } })
  assert.equal(one.name, 'admin')
  const none = await operatorQuery(client, 'getIfExists', { where: { condition: [{ expr: "@name = 'x'' or 1=1 --'" }] } })
  assert.equal(none, null, 'the injection attempt is a value that matches nothing')
  const count = await client.NLWS.xtkQueryDef.create({ schema: 'xtk:operator', operation: 'count' }).executeQuery()
  assert.ok(Number(count.count) >= 40, 'built-in operators and the legacy population')
  // The recipients of the demo population.
  const recipients = await client.NLWS.xtkQueryDef.create({
    schema: 'nms:recipient', operation: 'select', lineCount: 5,
    select: { node: [{ expr: '@id' }, { expr: '@email' }] },
    where: { condition: [{ expr: "@email like '%@example.com'" }] }
  }).executeQuery()
  assert.equal(recipients.recipient.length, 5)
  const first = await client.NLWS.xtkQueryDef.create({
    schema: 'nms:recipient', operation: 'get', select: { node: [{ expr: '@email' }] },
    where: { condition: [{ expr: `@id = ${recipients.recipient[0].id}` }] }
  }).executeQuery()
  assert.equal(first.email, recipients.recipient[0].email)
  const n = await client.NLWS.xtkQueryDef.create({ schema: 'nms:recipient', operation: 'count' }).executeQuery()
  assert.ok(Number(n.count) >= 10)
}

test('queries on xtk:operator, signed in with a password, then with the session token alone and with both tokens', async () => {
  const client = await sdk.init(sdk.ConnectionParameters.ofUserAndPassword(instance.url, instance.admin_login, instance.admin_password))
  await client.logon()
  await queries(client)
  const sessionToken = client._sessionToken
  const securityToken = client._securityToken
  for (const params of [
    sdk.ConnectionParameters.ofSessionToken(instance.url, sessionToken),
    sdk.ConnectionParameters.ofSessionAndSecurityToken(instance.url, sessionToken, securityToken)
  ]) {
    const again = await sdk.init(params)
    await again.logon()
    await queries(again)
  }
  await client.logoff()
  // The session is over: the token-only client gets the SDK's session-expired error.
  const stale = await sdk.init(sdk.ConnectionParameters.ofSessionToken(instance.url, sessionToken))
  await stale.logon()
  await assert.rejects(operatorQuery(stale, 'count'), (e) => {
    assert.equal(e.errorCode, 'SDK-000012')
    return true
  })
})

test('IMS bearer mode, with and without sessionInfo: every call carries the token', async () => {
  const cred = JSON.parse(fs.readFileSync(process.env.INTEROP_CAMPAIGN_CREDENTIAL, 'utf8'))
  const form = new URLSearchParams({ grant_type: 'client_credentials', client_id: cred.client_id, client_secret: cred.client_secret, scope: 'openid,AdobeID,additional_info.projectedProductContext' })
  const token = (await (await fetch(`${up.ims_url}/ims/token/v3`, { method: 'POST', body: form })).json()).access_token
  for (const options of [{}, { sessionInfo: true }]) {
    const client = await sdk.init(sdk.ConnectionParameters.ofImsBearerToken(instance.url, token, options))
    await client.logon()
    if (options.sessionInfo) {
      assert.equal(client.getSessionInfo('SimpleJson').userInfo.login, cred.technical_account_email)
    }
    const n = await client.NLWS.xtkQueryDef.create({ schema: 'nms:recipient', operation: 'count' }).executeQuery()
    assert.ok(Number(n.count) >= 10)
    // Operators are not readable without the ADMINISTRATION right: a fault with its code.
    await assert.rejects(
      client.NLWS.xtkQueryDef.create({ schema: 'xtk:operator', operation: 'count' }).executeQuery(),
      (e) => { assert.equal(e.errorCode, 'XSV-350122'); return true }
    )
    await client.logoff()
  }
})

test('xtk:session#Write on nms:recipient: insert, update by email, delete by id', async () => {
  const client = await sdk.init(sdk.ConnectionParameters.ofUserAndPassword(instance.url, instance.admin_login, instance.admin_password))
  await client.logon()
  const email = `written.${Date.now()}@example.com`
  const find = (select) => client.NLWS.xtkQueryDef.create({
    schema: 'nms:recipient', operation: 'getIfExists', select: { node: select.map((expr) => ({ expr })) },
    where: { condition: [{ expr: `@email = '${email}'` }] }
  }).executeQuery()
  await client.NLWS.xtkSession.write({ xtkschema: 'nms:recipient', _operation: 'insert', email, firstName: 'Written', lastName: 'ByTheSdk' })
  const inserted = await find(['@id', '@firstName'])
  assert.equal(inserted.firstName, 'Written')
  await client.NLWS.xtkSession.write({ xtkschema: 'nms:recipient', _operation: 'update', _key: '@email', email, firstName: 'Updated' })
  assert.equal((await find(['@firstName'])).firstName, 'Updated')
  await client.NLWS.xtkSession.write({ xtkschema: 'nms:recipient', _operation: 'delete', id: inserted.id })
  assert.equal(await find(['@id']), null)
  await client.logoff()
})

test('xtk:session#Write on xtk:operator: create with groups, sign in as it, disable, delete', async () => {
  const admin = await sdk.init(sdk.ConnectionParameters.ofUserAndPassword(instance.url, instance.admin_login, instance.admin_password))
  await admin.logon()
  const login = `sdk-op-${Date.now()}`
  const password = 'written-by-the-sdk-1'
  await admin.NLWS.xtkSession.write({
    xtkschema: 'xtk:operator', _operation: 'insert', name: login, label: 'Written by the SDK', email: `${login}@example.com`, password,
    group: [{ name: 'reportAccess' }, { name: 'deliveryOperators' }]
  })
  const found = await admin.NLWS.xtkQueryDef.create({
    schema: 'xtk:operator', operation: 'get', select: { node: [{ expr: '@id' }, { expr: '@authType' }, { expr: '@disabled' }] },
    where: { condition: [{ expr: `@name = '${login}'` }] }
  }).executeQuery()
  assert.equal(found.authType, 'native')
  const operator = await sdk.init(sdk.ConnectionParameters.ofUserAndPassword(instance.url, login, password))
  await operator.logon()
  assert.equal(operator.getSessionInfo('SimpleJson').userInfo.login, login)
  // Not an administrator: it may not manage operators.
  await assert.rejects(operator.NLWS.xtkSession.write({ xtkschema: 'xtk:operator', name: login, label: 'self-promoted', group: [{ name: 'admin' }] }), (e) => {
    assert.equal(e.errorCode, 'XSV-350122')
    return true
  })
  await admin.NLWS.xtkSession.write({ xtkschema: 'xtk:operator', _operation: 'update', _key: '@id', id: found.id, disabled: 'true' })
  await assert.rejects(operator.ping().then(() => operator.NLWS.xtkSession.getServerTime()), (e) => {
    assert.equal(e.errorCode, 'SDK-000012', 'the disabled operator\'s session has ended')
    return true
  })
  const again = await sdk.init(sdk.ConnectionParameters.ofUserAndPassword(instance.url, login, password))
  await assert.rejects(again.logon(), (e) => e.errorCode === 'XSV-350024')
  await admin.NLWS.xtkSession.write({ xtkschema: 'xtk:operator', _operation: 'delete', name: login })
  const gone = await admin.NLWS.xtkQueryDef.create({
    schema: 'xtk:operator', operation: 'count', where: { condition: [{ expr: `@name = '${login}'` }] }
  }).executeQuery()
  assert.equal(Number(gone.count), 0)
  await admin.logoff()
})
