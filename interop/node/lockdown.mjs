// The lock-down seen by its users: with both restrictions on for the marketing instance,
// @adobe/acc-js-sdk (unmodified) gets the structured error for a native operator outside the
// allow-list, admin still signs in, bearer tokens keep working; and the instance console, in
// headless Chromium, shows the operator controls disabled with the reason. Run by interop/run
// after `ims instance restrictions enable`, apart from the other tests, which expect an open
// instance.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import fs from 'node:fs'
import sdk from '@adobe/acc-js-sdk'
import { chromium } from 'playwright-core'

const up = JSON.parse(fs.readFileSync(process.env.INTEROP_UP_JSON, 'utf8'))
const cred = JSON.parse(fs.readFileSync(process.env.INTEROP_CAMPAIGN_CREDENTIAL, 'utf8'))
const native = JSON.parse(fs.readFileSync(process.env.INTEROP_NATIVE_OPERATOR, 'utf8'))
const instance = up.instances.find((i) => i.name === 'marketing')

test('a native operator outside the allow-list is refused with the structured error', async () => {
  const client = await sdk.init(sdk.ConnectionParameters.ofUserAndPassword(instance.url, native.login, native.password))
  await assert.rejects(client.logon(), (e) => {
    assert.equal(e.errorCode, 'XSV-350024')
    assert.match(e.faultString, /Invalid login or password/)
    return true
  })
})

test('admin, on the allow-list, still signs in natively', async () => {
  const client = await sdk.init(sdk.ConnectionParameters.ofUserAndPassword(instance.url, instance.admin_login, instance.admin_password))
  await client.logon()
  assert.equal(client.getSessionInfo('SimpleJson').userInfo.login, 'admin')
  await client.logoff()
})

test('bearer tokens keep working', async () => {
  const form = new URLSearchParams({ grant_type: 'client_credentials', client_id: cred.client_id, client_secret: cred.client_secret, scope: 'openid,AdobeID,additional_info.projectedProductContext' })
  const res = await fetch(`${up.ims_url}/ims/token/v3`, { method: 'POST', body: form })
  assert.equal(res.status, 200)
  const client = await sdk.init(sdk.ConnectionParameters.ofBearerToken(instance.url, (await res.json()).access_token))
  await client.logon()
  assert.equal(client.getSessionInfo('SimpleJson').userInfo.login, cred.technical_account_email)
  assert.equal((await client.ping()).status, 'OK')
  await client.logoff()
})

test('the console shows operator management disabled, with the reason', async (t) => {
  const browser = await chromium.launch({ executablePath: process.env.CHROMIUM_PATH, headless: true, args: ['--no-sandbox'] })
  t.after(() => browser.close())
  const context = await browser.newContext({ ignoreHTTPSErrors: true, javaScriptEnabled: false })
  const page = await context.newPage()
  await page.goto(`${instance.url}/console/login`)
  await page.fill('#login', instance.admin_login)
  await page.fill('#password', instance.admin_password)
  await page.click('button[type=submit]')
  await page.goto(`${instance.url}/console/operators?q=${encodeURIComponent(native.login)}`)
  const create = page.getByRole('button', { name: 'New operator' })
  assert.equal(await create.isDisabled(), true, 'no new native operators')
  assert.match(await page.locator('#creation-restricted').innerText(), /can no longer be created/)
  await page.getByRole('link', { name: native.login, exact: true }).click()
  assert.match(await page.locator('#restricted').innerText(), /can no longer be changed or deleted/)
  for (const field of ['#login', '#label', '#email', '#password']) {
    assert.equal(await page.locator(field).isDisabled(), true, `${field} is disabled`)
  }
  assert.equal(await page.getByRole('button', { name: 'Save' }).isDisabled(), true)
  assert.equal(await page.getByRole('button', { name: `Delete operator ${native.login}` }).isDisabled(), true)
  const adminConsole = page.locator('#restricted a', { hasText: 'Admin Console' })
  assert.equal(await adminConsole.getAttribute('href'), `${up.ims_url}/admin/`)
  await page.goto(`${instance.url}/console/restrictions`)
  assert.equal(await page.locator('#operator-management').innerText(), 'On')
  assert.equal(await page.locator('#native-api').innerText(), 'On')
  assert.match(await page.locator('#allow-list').innerText(), /internal\|monitoring/)
})
