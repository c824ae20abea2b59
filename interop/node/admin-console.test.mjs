// The Admin Console in headless Chromium: an administrator signs in through the IMS sign-in
// pages, creates a product profile and a user, adds the user to the profile; the change shows in
// the audit log page and through the User Management API.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import fs from 'node:fs'
import { chromium } from 'playwright-core'

const up = JSON.parse(fs.readFileSync(process.env.INTEROP_UP_JSON, 'utf8'))
const umapi = JSON.parse(fs.readFileSync(process.env.INTEROP_UMAPI_CREDENTIAL, 'utf8'))
const run = Math.random().toString(16).slice(2, 10)

test('an administrator manages a profile and a user in the Admin Console', async (t) => {
  const browser = await chromium.launch({ executablePath: process.env.CHROMIUM_PATH, headless: true, args: ['--no-sandbox'] })
  t.after(() => browser.close())
  const context = await browser.newContext({ ignoreHTTPSErrors: true, javaScriptEnabled: false })
  const page = await context.newPage()

  await page.goto(`${up.ims_url}/admin/`)
  assert.match(page.url(), /\/ims\/signin\//, 'sent to the IMS sign-in')
  await page.fill('#email', up.admin_email)
  await page.click('button[type=submit]')
  await page.fill('#password', up.admin_password)
  await page.click('button[type=submit]')
  assert.equal(new URL(page.url()).pathname, '/admin/')
  assert.equal(await page.textContent('#who'), up.admin_email)

  const profile = `campaign - marketing - browser ${run}`
  await page.goto(`${up.ims_url}/admin/profiles`)
  await page.selectOption('#instance', { label: 'Campaign (marketing) (dma_campaign_classic / marketing)' })
  await page.fill('#name', profile)
  await page.fill('#permissions', 'export')
  await page.click('#new-profile button[type=submit]')
  assert.equal(await page.textContent('h1'), profile)

  const email = `browser.${run}@example.com`
  await page.goto(`${up.ims_url}/admin/users`)
  await page.fill('#email', email)
  await page.fill('#firstname', 'Brow')
  await page.fill('#lastname', 'Ser')
  await page.fill('#country', 'fr')
  await page.click('#new-user button[type=submit]')
  assert.equal(await page.textContent('h1'), email)

  await page.goto(`${up.ims_url}/admin/profiles/${encodeURIComponent(profile)}`)
  await page.fill('#member', email)
  await page.click('#add-member button[type=submit]')
  assert.match(await page.textContent('#members'), new RegExp(email.replace(/\./g, '\\.')))

  await page.goto(`${up.ims_url}/admin/audit`)
  const audit = await page.textContent('#audit')
  assert.match(audit, /profile\.create/)
  assert.ok(audit.includes(`admin:${up.admin_email}`), 'who')
  assert.ok(audit.includes(email), 'what, about whom')

  // The same change through the API.
  const form = new URLSearchParams({ grant_type: 'client_credentials', client_id: umapi.client_id, client_secret: umapi.client_secret, scope: 'openid,AdobeID,user_management_sdk' })
  const token = (await (await fetch(`${up.ims_url}/ims/token/v3`, { method: 'POST', body: form })).json()).access_token
  const res = await fetch(`${up.ims_url}/v2/usermanagement/organizations/${up.org_id}/users/${encodeURIComponent(email)}`, {
    headers: { Authorization: `Bearer ${token}`, 'x-api-key': umapi.client_id }
  })
  assert.equal(res.status, 200)
  const user = (await res.json()).user
  assert.deepEqual(user.groups, [profile])
  assert.equal(user.country, 'FR')
})
