// What the instance's users see of the migration, through @adobe/acc-js-sdk (unmodified) and the
// instance console's sign-in form. `interop/migration/run` calls it at three points:
//
//   before  the demo's three integrations sign in with their passwords and call the API, and a
//           person signs in to the console and through the SDK; the person's SDK session is kept
//           open (its token written to the secrets file) to see it ended by the move;
//   moved   after the end-user phase: the person's password no longer opens anything, and the
//           session it had is over;
//   after   after finalisation: native sign-in is refused (a SOAP fault) to everyone outside the
//           allow-list, admin still signs in, and each integration's new credential works through
//           the SDK's bearer-token mode;
//   come-in INSTANCE PLAN MAIL_DIR: every person the end-user plan created at the IMS opens the
//           invitation mailed to them (an .eml file of MAIL_DIR), chooses a password, and lands
//           in the instance's console through "Connect with IMS".
//
// Environment: MIGRATION_UP_JSON (up.json), MIGRATION_SECRETS (a JSON file, owner-only, holding
// the passwords the integrations' owners know), MIGRATION_KITS (the integration kits of the
// instance). The SDK is the one interop/node installs, so that every suite runs the same pinned
// version.
import assert from 'node:assert/strict'
import { createRequire } from 'node:module'
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'

const require = createRequire(new URL('../node/package.json', import.meta.url))
const sdk = require('@adobe/acc-js-sdk')

const INTEGRATIONS = ['crm-sync', 'web-forms', 'bi-export']
// A person of the demo population with an email from the start, in the campaign managers' group.
const PERSON = 'ana.abe'

const up = JSON.parse(fs.readFileSync(process.env.MIGRATION_UP_JSON, 'utf8'))
const instance = up.instances.find((i) => i.name === 'marketing')
const secretsFile = process.env.MIGRATION_SECRETS

function readSecrets () {
  return JSON.parse(fs.readFileSync(secretsFile, 'utf8'))
}

function writeSecrets (secrets) {
  fs.writeFileSync(secretsFile, JSON.stringify(secrets, null, 2), { mode: 0o600 })
}

function say (text) {
  console.log(`   ${text}`)
}

// Runs one named check; a failure says which one, then ends the process with status 1.
async function check (name, fn) {
  try {
    await fn()
    say(`ok: ${name}`)
  } catch (e) {
    console.error(`!!! FAILED: ${name}`)
    console.error(e && e.stack ? e.stack : e)
    process.exit(1)
  }
}

async function signIn (login, password) {
  const client = await sdk.init(sdk.ConnectionParameters.ofUserAndPassword(instance.url, login, password))
  await client.logon()
  return client
}

// One real call of each kind an integration makes: the server's time and a query.
async function calls (client) {
  const time = await client.NLWS.xtkSession.getServerTime()
  assert.ok(!Number.isNaN(new Date(time).getTime()), `GetServerTime answered ${time}`)
  const n = await client.NLWS.xtkQueryDef.create({ schema: 'nms:recipient', operation: 'count' }).executeQuery()
  assert.ok(Number(n.count) >= 10, `recipients counted: ${n.count}`)
}

// The refusal a native sign-in meets: the SDK's structured error for the SOAP fault of Logon.
function refusedLogon (e) {
  assert.equal(e.name, 'CampaignException', String(e))
  assert.equal(e.methodCall && e.methodCall.type, 'SOAP', 'a SOAP fault, not a transport error')
  assert.equal(e.methodCall.methodName, 'Logon')
  assert.equal(e.errorCode, 'XSV-350024')
  assert.match(e.faultString, /Invalid login or password/)
  return true
}

// The console's sign-in form, as a browser submits it: the form's token, its cookie, the fields.
async function consoleSignIn (login, password) {
  const page = await fetch(`${instance.url}/console/login`)
  assert.equal(page.status, 200)
  const cookies = page.headers.getSetCookie().map((c) => c.split(';')[0]).join('; ')
  const csrf = (await page.text()).match(/name="csrf" value="([^"]+)"/)
  assert.ok(csrf, 'the sign-in form carries its token')
  return fetch(`${instance.url}/console/login`, {
    method: 'POST',
    redirect: 'manual',
    headers: { 'Content-Type': 'application/x-www-form-urlencoded', Cookie: cookies },
    body: new URLSearchParams({ csrf: csrf[1], login, password })
  })
}

async function before () {
  // The demo's operators have random passwords no one was shown. Their owners would know them:
  // the administrator sets known ones here, through the API, before anything is assessed.
  const secrets = { integrations: {}, person: { login: PERSON } }
  await check('admin signs in natively and sets the passwords the integrations and the person use', async () => {
    const admin = await signIn(instance.admin_login, instance.admin_password)
    for (const login of [...INTEGRATIONS, PERSON]) {
      const password = `pw-${crypto.randomBytes(18).toString('base64url')}`
      await admin.NLWS.xtkSession.write({ xtkschema: 'xtk:operator', _operation: 'update', _key: '@name', name: login, password })
      if (login === PERSON) secrets.person.password = password
      else secrets.integrations[login] = password
    }
    await admin.logoff()
  })
  writeSecrets(secrets)
  for (const login of INTEGRATIONS) {
    await check(`${login} signs in with its password, calls GetServerTime and a query, signs off`, async () => {
      const client = await signIn(login, secrets.integrations[login])
      assert.equal(client.getSessionInfo('SimpleJson').userInfo.login, login)
      await calls(client)
      await client.logoff()
    })
  }
  await check(`${PERSON} signs in to the console with the password`, async () => {
    const res = await consoleSignIn(PERSON, secrets.person.password)
    assert.equal(res.status, 303)
    assert.equal(res.headers.get('location'), '/console/')
  })
  await check(`${PERSON} signs in through the SDK too and makes calls (the session stays open)`, async () => {
    const client = await signIn(PERSON, secrets.person.password)
    assert.equal(client.getSessionInfo('SimpleJson').userInfo.login, PERSON)
    await calls(client)
    secrets.person.session_token = client._sessionToken
    writeSecrets(secrets)
  })
}

async function moved () {
  const secrets = readSecrets()
  const { login, password } = secrets.person
  await check(`${login}'s password no longer signs in through the SDK (XSV-350024)`, async () => {
    const client = await sdk.init(sdk.ConnectionParameters.ofUserAndPassword(instance.url, login, password))
    await assert.rejects(client.logon(), refusedLogon)
  })
  await check(`${login}'s password no longer opens the console`, async () => {
    const res = await consoleSignIn(login, password)
    assert.equal(res.status, 401)
  })
  await check(`${login}'s native session opened before the move has ended (the SDK's session expired)`, async () => {
    const client = await sdk.init(sdk.ConnectionParameters.ofSessionToken(instance.url, secrets.person.session_token))
    await client.logon()
    await assert.rejects(client.NLWS.xtkSession.getServerTime(), (e) => {
      assert.equal(e.errorCode, 'SDK-000012')
      return true
    })
  })
  await check('the integrations still sign in with their passwords until they switch', async () => {
    for (const l of INTEGRATIONS) {
      const client = await signIn(l, secrets.integrations[l])
      await client.logoff()
    }
  })
}

async function token (credential) {
  const form = new URLSearchParams({ grant_type: 'client_credentials', client_id: credential.client_id, client_secret: credential.client_secret })
  const res = await fetch(`${up.ims_url}/ims/token/v3`, { method: 'POST', body: form })
  assert.equal(res.status, 200, 'the IMS issues a token for the kit\'s credential')
  return (await res.json()).access_token
}

async function after () {
  const secrets = readSecrets()
  for (const login of INTEGRATIONS) {
    await check(`${login}'s password is refused: a SOAP fault, XSV-350024`, async () => {
      const client = await sdk.init(sdk.ConnectionParameters.ofUserAndPassword(instance.url, login, secrets.integrations[login]))
      await assert.rejects(client.logon(), refusedLogon)
    })
  }
  await check(`${PERSON}'s password is refused: a SOAP fault, XSV-350024`, async () => {
    const client = await sdk.init(sdk.ConnectionParameters.ofUserAndPassword(instance.url, PERSON, secrets.person.password))
    await assert.rejects(client.logon(), refusedLogon)
  })
  await check('admin, on the allow-list, still signs in natively', async () => {
    const client = await signIn(instance.admin_login, instance.admin_password)
    assert.equal(client.getSessionInfo('SimpleJson').userInfo.login, 'admin')
    await client.logoff()
  })
  const kits = process.env.MIGRATION_KITS
  for (const login of INTEGRATIONS) {
    const credential = JSON.parse(fs.readFileSync(path.join(kits, login, 'credential.json'), 'utf8'))
    await check(`${login}'s technical account, with an IMS token (BearerTokenLogon), calls GetServerTime and a query`, async () => {
      const client = await sdk.init(sdk.ConnectionParameters.ofBearerToken(instance.url, await token(credential)))
      await client.logon()
      assert.equal(client.getSessionInfo('SimpleJson').userInfo.login, credential.technical_account_email)
      await calls(client)
      await client.logoff()
    })
    await check(`${login}'s technical account, with the token on every call (ofImsBearerToken)`, async () => {
      const client = await sdk.init(sdk.ConnectionParameters.ofImsBearerToken(instance.url, await token(credential)))
      await client.logon()
      await calls(client)
      await client.logoff()
    })
  }
}

// A browser's cookies, per origin, for fetch with redirects read by hand.
class Browser {
  constructor () { this.jar = new Map() }

  async go (url, form) {
    const origin = new URL(url).origin
    const cookies = this.jar.get(origin) || new Map()
    const headers = {}
    if (cookies.size) headers.Cookie = [...cookies].map(([k, v]) => `${k}=${v}`).join('; ')
    const init = { redirect: 'manual', headers }
    if (form) {
      init.method = 'POST'
      headers['Content-Type'] = 'application/x-www-form-urlencoded'
      init.body = new URLSearchParams(form)
    }
    const res = await fetch(url, init)
    for (const line of res.headers.getSetCookie()) {
      const [pair] = line.split(';')
      const at = pair.indexOf('=')
      const [k, v] = [pair.slice(0, at).trim(), pair.slice(at + 1)]
      if (!v || /Max-Age=0/i.test(line)) cookies.delete(k)
      else cookies.set(k, v)
    }
    this.jar.set(origin, cookies)
    const location = res.headers.get('location')
    return { status: res.status, location: location && new URL(location, url).toString(), text: await res.text() }
  }
}

// The newest invitation link mailed to `email` among the .eml files of `dir`.
function invitationLink (dir, email) {
  let found = null
  for (const name of fs.readdirSync(dir).filter((n) => n.endsWith('.eml'))) {
    const file = path.join(dir, name)
    const text = fs.readFileSync(file, 'utf8').replace(/=\r?\n/g, '')
    if (!text.split(/\r?\n/).some((l) => l.toLowerCase() === `to: ${email.toLowerCase()}`)) continue
    const link = text.match(/https:\/\/[^\s"<>]+\/ims\/invitation\/[A-Za-z0-9_-]+/)
    const at = fs.statSync(file).mtimeMs
    if (link && (!found || at > found.at)) found = { at, link: link[0] }
  }
  return found && found.link
}

// The first message to `email` whose subject says it, among the .eml files of `dir`.
function mailWithSubject (dir, email, subject) {
  for (const name of fs.readdirSync(dir).filter((n) => n.endsWith('.eml'))) {
    const text = fs.readFileSync(path.join(dir, name), 'utf8')
    const lines = text.split(/\r?\n/)
    if (lines.some((l) => l.toLowerCase() === `to: ${email.toLowerCase()}`) && lines.includes(`Subject: ${subject}`)) return text
  }
  return null
}

async function waitFor (what, fn) {
  for (let i = 0; i < 100; i++) {
    const found = fn()
    if (found) return found
    await new Promise((resolve) => setTimeout(resolve, 200))
  }
  assert.fail(`${what} never arrived`)
}

// "Connect with IMS" from the instance's console to its home page: through the IMS's sign-in
// form when `password` is given, without a form (an IMS session already) otherwise.
async function connect (b, target, login, email, password) {
  const start = await b.go(`${target.url}/console/ims/login`)
  assert.equal(start.status, 303, start.text)
  let back = await b.go(start.location)
  if (password) {
    assert.match(back.location, /\/ims\/signin\//, 'the IMS asks who signs in')
    const page = back.location
    for (const [field, value] of [['email', email], ['password', password]]) {
      const form = await b.go(page)
      const csrf = form.text.match(/name="csrf" value="([^"]+)"/)[1]
      back = await b.go(page, { csrf, [field]: value })
      assert.equal(back.status, 303, back.text)
    }
  }
  assert.equal(back.status, 303, back.text)
  assert.match(back.location, /\/console\/ims\/callback\?/, `back to the instance: ${back.location}`)
  const callback = await b.go(back.location)
  assert.equal(callback.status, 303, callback.text)
  const home = await b.go(callback.location)
  assert.equal(home.status, 200)
  assert.ok(home.text.includes(login), `the console opens as ${login}`)
}

async function comeIn () {
  const [name, planFile, mailDir] = process.argv.slice(3)
  const target = up.instances.find((i) => i.name === name)
  const plan = JSON.parse(fs.readFileSync(planFile, 'utf8'))
  const secrets = readSecrets()
  secrets.people = secrets.people || {}
  const created = plan.people.filter((p) => !p.ims_user)
  say(`${created.length} people created at the IMS by the plan; ${plan.people.length - created.length} held an account already`)
  for (const person of plan.people) {
    if (!person.ims_user) {
      await check(`${person.login} opens the invitation mailed to ${person.email}, chooses a password and lands in the console`, async () => {
        const link = await waitFor(`an invitation to ${person.email}`, () => invitationLink(mailDir, person.email))
        const b = new Browser()
        const page = await b.go(link)
        assert.equal(page.status, 200, page.text)
        const csrf = page.text.match(/name="csrf" value="([^"]+)"/)[1]
        const password = `pw-${crypto.randomBytes(18).toString('base64url')}`
        const set = await b.go(link, { csrf, password, confirm: password })
        assert.equal(set.status, 303, set.text)
        assert.equal(set.location, `${target.url}/console/`, 'sent on to the instance')
        secrets.people[person.email.toLowerCase()] = password
        await connect(b, target, person.login, person.email)
        const again = await b.go(link)
        assert.equal(again.status, 410, 'the link works once')
      })
    } else {
      await check(`${person.login}, who holds an account, is told of ${name} by mail and signs in to it with the password`, async () => {
        await waitFor(`"you now have access" to ${person.email}`, () =>
          mailWithSubject(mailDir, person.email, `You now have access to Campaign (${name})`))
        const password = secrets.people[person.email.toLowerCase()]
        assert.ok(password, `the demo knows no password of ${person.email}`)
        await connect(new Browser(), target, person.login, person.email, password)
      })
    }
  }
  writeSecrets(secrets)
}

const phases = { before, moved, after, 'come-in': comeIn }
const phase = phases[process.argv[2]]
if (!phase) {
  console.error(`usage: clients.mjs ${Object.keys(phases).join('|')}`)
  process.exit(2)
}
await phase()
