// Connect with IMS, in headless Chromium and with the instance's SOAP router: a person in the
// marketing instance's Administrator profile signs in to its console through the IMS and lands
// as an operator of the Administrator group; the profile taken away in the Admin Console, the
// group goes at the next sign-in; signing out at the IMS ends the instance session; someone
// without a matching profile is refused with the vendor's message. On the Message Center instance, a technical account holding the
// messagecenter profile may PushEvent, one without it gets a rights fault until the profile is
// added in the Developer Console (then within the documented bound).
// Run by interop/run once both instances have an IMS configuration.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import fs from 'node:fs'
import { chromium } from 'playwright-core'

const up = JSON.parse(fs.readFileSync(process.env.INTEROP_UP_JSON, 'utf8'))
const person = JSON.parse(fs.readFileSync(process.env.INTEROP_PERSON, 'utf8'))
const developer = JSON.parse(fs.readFileSync(process.env.INTEROP_DEVELOPER, 'utf8'))
const marketing = up.instances.find((i) => i.name === 'marketing')
const mc = up.instances.find((i) => i.name === 'mc')
const ADMINISTRATOR = 'campaign - marketing - Administrator'
const DELIVERY = 'campaign - marketing - deliveryOperators'
const MESSAGE_CENTER = 'campaign - mc - messagecenter'
const refreshSecs = Number(process.env.INTEROP_PROFILE_REFRESH_SECS)

async function signInAtIms (page, who) {
  assert.match(page.url(), /\/ims\/signin\//, `sent to the IMS sign-in, at ${page.url()}`)
  await page.fill('#email', who.email)
  await page.click('button[type=submit]')
  await page.fill('#password', who.password)
  await page.click('button[type=submit]')
}

async function adminConsole (browser) {
  const context = await browser.newContext({ ignoreHTTPSErrors: true })
  const page = await context.newPage()
  await page.goto(`${up.ims_url}/admin/`)
  await signInAtIms(page, { email: up.admin_email, password: up.admin_password })
  return page
}

async function profileMember (admin, profile, email, held) {
  await admin.goto(`${up.ims_url}/admin/profiles/${encodeURIComponent(profile)}`)
  if (held) {
    await admin.fill('#member', email)
    await admin.click('#add-member button[type=submit]')
  } else {
    await admin.locator('tr', { hasText: email }).locator('button', { hasText: 'Remove' }).click()
  }
}

async function connectWithIms (page, who) {
  await page.goto(`${marketing.url}/console/login`)
  await page.click('text=Connect with IMS')
  if (page.url().includes('/ims/signin/')) await signInAtIms(page, who)
}

test('people connect with IMS; their groups follow their product profiles', async (t) => {
  const browser = await chromium.launch({ executablePath: process.env.CHROMIUM_PATH, headless: true, args: ['--no-sandbox'] })
  t.after(() => browser.close())
  const admin = await adminConsole(browser)
  await profileMember(admin, ADMINISTRATOR, person.email, true)
  await profileMember(admin, DELIVERY, person.email, true)

  const context = await browser.newContext({ ignoreHTTPSErrors: true })
  const page = await context.newPage()
  await connectWithIms(page, person)
  assert.equal(page.url(), `${marketing.url}/console/`)
  assert.match(await page.textContent('.notice'), /operator created/)
  assert.equal((await page.textContent('#auth-type')).trim(), 'IMS')
  assert.deepEqual((await page.textContent('#groups')).split(',').map((g) => g.trim()).sort(), ['admin', 'deliveryOperators'])
  await page.goto(`${marketing.url}/console/operators`)
  assert.match(await page.textContent('h1'), /Operators/, 'an administrator of the instance')

  // Taken away in the Admin Console: gone at the next sign-in (the IMS session still holds,
  // so no password is asked).
  await profileMember(admin, ADMINISTRATOR, person.email, false)
  await page.goto(`${marketing.url}/console/`)
  await page.click('.signout button[type=submit]')
  assert.match(await page.textContent('a.button'), /Sign out of the IMS too/)
  await connectWithIms(page, person)
  assert.equal(page.url(), `${marketing.url}/console/`)
  assert.match(await page.textContent('.notice'), /groups removed: admin/)
  assert.equal((await page.textContent('#groups')).trim(), 'deliveryOperators')
  const refused = await page.goto(`${marketing.url}/console/operators`)
  assert.equal(refused.status(), 403)

  // Signing out at the IMS ends the instance session too (back-channel logout).
  await page.goto(`${up.ims_url}/ims/logout/v1`)
  await page.click('button[type=submit]')
  await page.goto(`${marketing.url}/console/`)
  assert.equal(page.url(), `${marketing.url}/console/login`)

  // No matching profile: the vendor's message.
  const other = await (await browser.newContext({ ignoreHTTPSErrors: true })).newPage()
  await connectWithIms(other, developer)
  assert.match(await other.textContent('[role=alert]'), /Login does not have any right matching the expression/)
  assert.match(other.url(), /\/console\/ims\/callback/)
})

async function token (cred) {
  const resp = await fetch(`${up.ims_url}/ims/token/v3`, {
    method: 'POST',
    body: new URLSearchParams({ grant_type: 'client_credentials', client_id: cred.client_id, client_secret: cred.client_secret, scope: 'openid,AdobeID,additional_info.projectedProductContext' })
  })
  assert.equal(resp.status, 200)
  return (await resp.json()).access_token
}

async function pushEvent (bearer) {
  const envelope = '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:urn="urn:nms:rtEvent"><soapenv:Header/><soapenv:Body><urn:PushEvent><urn:sessiontoken/><urn:domEvent><rtEvent type="ORDER_CONFIRMATION" email="jane@example.com"><ctx><orderId>A-17</orderId></ctx></rtEvent></urn:domEvent></urn:PushEvent></soapenv:Body></soapenv:Envelope>'
  const resp = await fetch(`${mc.url}/nl/jsp/soaprouter.jsp`, {
    method: 'POST',
    headers: { 'Content-Type': 'text/xml; charset=utf-8', SOAPAction: 'nms:rtEvent#PushEvent', Authorization: `Bearer ${bearer}` },
    body: envelope
  })
  return resp.text()
}

test('a technical account may PushEvent only with the Message Center profile', async (t) => {
  const withProfile = JSON.parse(fs.readFileSync(process.env.INTEROP_MC_WITH, 'utf8'))
  const without = JSON.parse(fs.readFileSync(process.env.INTEROP_MC_WITHOUT, 'utf8'))
  const browser = await chromium.launch({ executablePath: process.env.CHROMIUM_PATH, headless: true, args: ['--no-sandbox'] })
  t.after(() => browser.close())
  const admin = await adminConsole(browser)
  // In the Admin Console: the profile's API credentials.
  await admin.goto(`${up.ims_url}/admin/profiles/${encodeURIComponent(MESSAGE_CENTER)}`)
  await admin.fill('#client_id', withProfile.client_id)
  await admin.click('#add-credential button[type=submit]')

  assert.match(await pushEvent(await token(withProfile)), /<plId xsi:type='xsd:long'>\d+/)
  const bearer = await token(without)
  assert.match(await pushEvent(bearer), /XSV-350122/, 'a rights fault')

  // Added in the Developer Console: the next calls succeed within the bound.
  await admin.goto(`${up.ims_url}/admin/developer/credentials/${without.client_id}`)
  await admin.check('#subscribe input[name=service][value=CampaignSDK]')
  await admin.locator('#subscribe label', { hasText: MESSAGE_CENTER }).locator('input[name=profile]').check()
  await admin.click('#subscribe button[type=submit]')
  assert.match(await admin.textContent('#profiles'), new RegExp(MESSAGE_CENTER))
  const started = Date.now()
  let answer
  do {
    answer = await pushEvent(bearer)
    if (/<plId/.test(answer)) break
    await new Promise((resolve) => setTimeout(resolve, 250))
  } while (Date.now() - started < (refreshSecs + 5) * 1000)
  assert.match(answer, /<plId xsi:type='xsd:long'>\d+/, `still refused after ${refreshSecs + 5} s: ${answer}`)
  console.log(`PushEvent allowed ${((Date.now() - started) / 1000).toFixed(1)} s after the profile was added (bound ${refreshSecs} s)`)
})
