// The Developer Console in headless Chromium: a developer signs in through the IMS sign-in pages,
// creates a project, adds the Campaign API with an OAuth Server-to-Server credential and a
// product profile, copies the curl command for a token (running it returns a token) and the one
// for a SOAP call with a test token (running it reaches the instance as the technical account).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import fs from 'node:fs'
import { execFileSync } from 'node:child_process'
import { chromium } from 'playwright-core'

const up = JSON.parse(fs.readFileSync(process.env.INTEROP_UP_JSON, 'utf8'))
const developer = JSON.parse(fs.readFileSync(process.env.INTEROP_DEVELOPER, 'utf8'))
const profileName = process.env.INTEROP_UMAPI_PROFILE
const run = Math.random().toString(16).slice(2, 10)

test('a developer creates a project with the Campaign API and runs the copied curl commands', async (t) => {
  const browser = await chromium.launch({ executablePath: process.env.CHROMIUM_PATH, headless: true, args: ['--no-sandbox'] })
  t.after(() => browser.close())
  const context = await browser.newContext({ ignoreHTTPSErrors: true })
  await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: up.ims_url })
  const page = await context.newPage()

  await page.goto(`${up.ims_url}/admin/developer`)
  assert.match(page.url(), /\/ims\/signin\//, 'sent to the IMS sign-in')
  await page.fill('#email', developer.email)
  await page.click('button[type=submit]')
  await page.fill('#password', developer.password)
  await page.click('button[type=submit]')
  await page.goto(`${up.ims_url}/admin/developer`)
  assert.equal(await page.textContent('h1'), 'Developer Console')

  await page.fill('#name', `browser-${run}`)
  await page.fill('#title', `Browser ${run}`)
  await page.click('#create-project button[type=submit]')
  assert.equal(await page.textContent('h1'), `Browser ${run}`)
  // A developer may not open the User Management API.
  assert.equal(await page.isDisabled('input[name=service][value=UserMgmtSDK]'), true)

  await page.check('input[name=service][value=CampaignSDK]')
  await page.check('input[name=authentication][value=oauth-server-to-server]')
  await page.locator('label', { hasText: profileName }).locator('input[name=profile]').check()
  await page.click('#add-api button[type=submit]')
  assert.match(await page.textContent('#profiles'), new RegExp(profileName))
  const clientId = (await page.textContent('#client-id')).trim()
  // The first secret is shown on request, once.
  await page.click('#show-secret button[type=submit]')

  await page.click('button[data-copy=token-curl]')
  const copied = await page.evaluate(() => navigator.clipboard.readText())
  assert.equal(copied, await page.textContent('#token-curl'), 'the button copies the command')
  assert.match(copied, new RegExp(`client_id='${clientId}'`))

  // Run it as copied, trusting our CA.
  const out = execFileSync('sh', ['-c', `${copied} --cacert "$CA"`], { env: { ...process.env, CA: process.env.NODE_EXTRA_CA_CERTS } })
  const body = JSON.parse(out.toString())
  assert.equal(body.token_type, 'bearer')
  const claims = JSON.parse(Buffer.from(body.access_token.split('.')[1], 'base64url'))
  assert.equal(claims.client_id, clientId)

  // A test token, and the SOAP call to the instance the profile grants, run as copied.
  await page.click('#generate-token button[type=submit]')
  await page.click('button[data-copy=soap-curl-1]')
  const soap = await page.evaluate(() => navigator.clipboard.readText())
  assert.match(soap, /soaprouter\.jsp/)
  const answer = execFileSync('sh', ['-c', `${soap} --cacert "$CA"`], { env: { ...process.env, CA: process.env.NODE_EXTRA_CA_CERTS } }).toString()
  assert.match(answer, /GetUserInfoResponse/, answer)
  assert.ok(answer.includes(claims.email), 'the instance knows the technical account by its email')

  // Shown once: the credential's page no longer offers or shows it.
  await page.goto(`${up.ims_url}/admin/developer/credentials/${clientId}`)
  assert.equal(await page.locator('code.secret').count(), 0)
  assert.equal(await page.locator('#show-secret').count(), 0)
  assert.match(await page.textContent('#token-curl'), /\$CLIENT_SECRET/)
})
