// openid-client 6 (unmodified) against `ims up`: discovery, client credentials with JWKS
// verification, introspection and revocation; then a person signs in through the IMS's pages in
// headless Chromium (authorization code + PKCE), and the client validates the ID token, reads
// userinfo, refreshes, and signs out (RP-initiated logout).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import fs from 'node:fs'
import http from 'node:http'
import * as client from 'openid-client'
import * as jose from 'jose'
import { chromium } from 'playwright-core'

const up = JSON.parse(fs.readFileSync(process.env.INTEROP_UP_JSON, 'utf8'))
const cred = JSON.parse(fs.readFileSync(process.env.INTEROP_CREDENTIAL, 'utf8'))
const people = JSON.parse(fs.readFileSync(process.env.INTEROP_PEOPLE_CLIENT, 'utf8'))
const person = JSON.parse(fs.readFileSync(process.env.INTEROP_PERSON, 'utf8'))

test('discovery, client credentials, JWKS verification, introspection, revocation', async () => {
  const config = await client.discovery(new URL(up.ims_url), cred.client_id, undefined, client.ClientSecretBasic(cred.client_secret))
  assert.equal(config.serverMetadata().issuer, up.ims_url)
  const tokens = await client.clientCredentialsGrant(config, { scope: 'openid' })
  assert.ok(tokens.access_token)
  assert.equal(tokens.refresh_token, undefined)

  const jwks = jose.createRemoteJWKSet(new URL(config.serverMetadata().jwks_uri))
  const { payload, protectedHeader } = await jose.jwtVerify(tokens.access_token, jwks, {
    issuer: up.ims_url, audience: cred.client_id, algorithms: ['RS256', 'ES256', 'EdDSA']
  })
  assert.equal(protectedHeader.alg, 'RS256')
  assert.equal(payload.sub, cred.technical_account_id)
  const [h, , s] = tokens.access_token.split('.')
  const forged = Buffer.from(JSON.stringify({ ...payload, sub: 'admin' })).toString('base64url')
  await assert.rejects(jose.jwtVerify(`${h}.${forged}.${s}`, jwks))

  assert.equal((await client.tokenIntrospection(config, tokens.access_token)).active, true)
  await client.tokenRevocation(config, tokens.access_token)
  assert.equal((await client.tokenIntrospection(config, tokens.access_token)).active, false)
})

/** A loopback listener standing in for the application's redirect endpoint. */
async function callbackServer () {
  const server = http.createServer((req, res) => { res.writeHead(200, { 'content-type': 'text/plain' }); res.end('back at the application') })
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  return { server, base: `http://127.0.0.1:${server.address().port}` }
}

test('a person signs in in Chromium: code + PKCE, ID token, userinfo, refresh, logout', async (t) => {
  const browser = await chromium.launch({ executablePath: process.env.CHROMIUM_PATH, headless: true, args: ['--no-sandbox'] })
  t.after(() => browser.close())
  const { server, base } = await callbackServer()
  t.after(() => server.close())
  // Registered as http://127.0.0.1/cb: a loopback redirect may use any port (RFC 8252).
  const redirectUri = `${base}/cb`
  const config = await client.discovery(new URL(up.ims_url), people.client_id, undefined, client.None())
  const verifier = client.randomPKCECodeVerifier()
  const state = client.randomState()
  const nonce = client.randomNonce()
  const url = client.buildAuthorizationUrl(config, {
    redirect_uri: redirectUri,
    scope: 'openid email profile',
    code_challenge: await client.calculatePKCECodeChallenge(verifier),
    code_challenge_method: 'S256',
    state,
    nonce
  })
  // Our private CA is not in Chromium's store; the page itself is what is under test.
  const context = await browser.newContext({ ignoreHTTPSErrors: true, javaScriptEnabled: false })
  const page = await context.newPage()
  await page.goto(url.href)
  await page.fill('#email', person.email)
  await page.click('button[type=submit]')
  await page.fill('#password', person.password)
  await page.click('button[type=submit]')
  // A third-party application: the person allows what it asks, once.
  assert.match(await page.textContent('main'), /would like to/)
  await Promise.all([page.waitForURL(`${redirectUri}**`), page.click('button[value=allow]')])
  const tokens = await client.authorizationCodeGrant(config, new URL(page.url()), {
    pkceCodeVerifier: verifier, expectedState: state, expectedNonce: nonce, idTokenExpected: true
  })
  const claims = tokens.claims()
  assert.equal(claims.iss, up.ims_url)
  assert.equal(claims.aud, people.client_id)
  assert.equal(claims.sub, person.user_id)
  assert.ok(claims.auth_time)
  const info = await client.fetchUserInfo(config, tokens.access_token, claims.sub)
  assert.equal(info.email, person.email)

  // A second authorization in the same browser needs no page.
  const again = client.buildAuthorizationUrl(config, {
    redirect_uri: redirectUri, scope: 'openid', code_challenge: await client.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256', state
  })
  await page.goto(again.href)
  assert.ok(page.url().startsWith(redirectUri), page.url())

  const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token)
  assert.notEqual(refreshed.refresh_token, tokens.refresh_token, 'rotated')
  await assert.rejects(client.refreshTokenGrant(config, tokens.refresh_token), (e) => e.error === 'invalid_grant')

  const logout = client.buildEndSessionUrl(config, { id_token_hint: tokens.id_token, post_logout_redirect_uri: `${redirectUri}`, state: 'bye' })
  await page.goto(logout.href)
  assert.ok(page.url().startsWith(`${redirectUri}?state=bye`), page.url())
  // Signed out: prompt=none now answers login_required.
  const silent = client.buildAuthorizationUrl(config, {
    redirect_uri: redirectUri, scope: 'openid', prompt: 'none', code_challenge: await client.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256', state
  })
  await page.goto(silent.href)
  assert.equal(new URL(page.url()).searchParams.get('error'), 'login_required')
})
