// An invited person, in headless Chromium: an administrator creates them in the Admin Console
// with a product profile of the marketing instance; the invitation arrives (an .eml file of
// `ims up`'s mail folder); the person opens its link, chooses a password, is sent on to the
// instance, clicks "Connect with IMS" and lands in its console as an operator of the profile's
// group. The link then works no more. Run by interop/run once the instances sign people in
// through the IMS and the marketing profiles exist.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { chromium } from 'playwright-core'

const up = JSON.parse(fs.readFileSync(process.env.INTEROP_UP_JSON, 'utf8'))
const marketing = up.instances.find((i) => i.name === 'marketing')
const mailDir = up.mail_dir
const DELIVERY = 'campaign - marketing - deliveryOperators'
const EMAIL = `invited.${Date.now()}@example.com`

// The invitation link in the newest message to `email`, once it is written.
async function invitationLink (email) {
  for (let i = 0; i < 150; i++) {
    let found = null
    for (const name of fs.readdirSync(mailDir).filter((n) => n.endsWith('.eml'))) {
      const file = path.join(mailDir, name)
      const text = fs.readFileSync(file, 'utf8').replace(/=\r?\n/g, '')
      if (!text.split(/\r?\n/).some((l) => l.toLowerCase() === `to: ${email}`)) continue
      const link = text.match(/https:\/\/[^\s"<>]+\/ims\/invitation\/[A-Za-z0-9_-]+/)
      const at = fs.statSync(file).mtimeMs
      if (link && (!found || at > found.at)) found = { at, link: link[0] }
    }
    if (found) return found.link
    await new Promise((resolve) => setTimeout(resolve, 200))
  }
  assert.fail(`no invitation mailed to ${email} in ${mailDir}`)
}

test('an invited person sets a password and lands in the instance console with the groups of their profile', async (t) => {
  assert.ok(mailDir, 'ims up writes mail to a folder (no SMTP server configured)')
  const browser = await chromium.launch({ executablePath: process.env.CHROMIUM_PATH, headless: true, args: ['--no-sandbox'] })
  t.after(() => browser.close())

  // The administrator creates the person with the profile; the invitation box is ticked.
  const admin = await (await browser.newContext({ ignoreHTTPSErrors: true })).newPage()
  await admin.goto(`${up.ims_url}/admin/`)
  assert.match(admin.url(), /\/ims\/signin\//, `the Admin Console signs in at the IMS, at ${admin.url()}`)
  await admin.fill('#email', up.admin_email)
  await admin.click('button[type=submit]')
  await admin.fill('#password', up.admin_password)
  await admin.click('button[type=submit]')
  await admin.goto(`${up.ims_url}/admin/users`)
  await admin.fill('#email', EMAIL)
  await admin.fill('#firstname', 'Ines')
  await admin.selectOption('#new-groups', [DELIVERY])
  assert.ok(await admin.isChecked('input[name=invite]'), 'invitations are sent by default')
  await admin.click('#new-user button[type=submit]')
  assert.match(await admin.textContent('#invitation'), /invited/)

  // The person opens the mailed link, in a browser of their own.
  const link = await invitationLink(EMAIL)
  const page = await (await browser.newContext({ ignoreHTTPSErrors: true })).newPage()
  await page.goto(link)
  assert.match(await page.textContent('h1'), /Set up your account/)
  await page.fill('#password', 'a passphrase for the invitation')
  await page.fill('#confirm', 'a passphrase for the invitation')
  await page.click('button[type=submit]')
  // On to the instance, where "Connect with IMS" signs them in without asking again.
  assert.ok(page.url().startsWith(`${marketing.url}/console`), `sent on to the instance: ${page.url()}`)
  await page.goto(`${marketing.url}/console/login`)
  await page.click('text=Connect with IMS')
  assert.equal(page.url(), `${marketing.url}/console/`)
  assert.equal((await page.textContent('#auth-type')).trim(), 'IMS')
  assert.deepEqual((await page.textContent('#groups')).split(',').map((g) => g.trim()), ['deliveryOperators'])

  // The link is spent; the administrator sees the invitation accepted.
  await page.goto(link)
  assert.match(await page.textContent('h1'), /This link no longer works/)
  await admin.goto(`${up.ims_url}/admin/users/${encodeURIComponent(EMAIL)}`)
  assert.match(await admin.textContent('#invitation'), /accepted/)
})
