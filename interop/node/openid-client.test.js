// A standard OpenID client (openid-client) and JOSE library (jose): discovery, JWKS, signature
// verification, introspection and revocation.
const { test } = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const { Issuer } = require('openid-client')
const jose = require('jose')

const up = JSON.parse(fs.readFileSync(process.env.INTEROP_UP_JSON, 'utf8'))
const cred = JSON.parse(fs.readFileSync(process.env.INTEROP_CREDENTIAL, 'utf8'))

test('discovery, JWKS and signature verification', async () => {
  const issuer = await Issuer.discover(up.ims_url)
  assert.equal(issuer.issuer, up.ims_url)
  const client = new issuer.Client({
    client_id: cred.client_id,
    client_secret: cred.client_secret,
    token_endpoint_auth_method: 'client_secret_basic'
  })
  const set = await client.grant({ grant_type: 'client_credentials', scope: 'openid' })
  assert.ok(set.access_token)
  assert.equal(set.refresh_token, undefined)

  const jwks = jose.createRemoteJWKSet(new URL(issuer.metadata.jwks_uri))
  const { payload, protectedHeader } = await jose.jwtVerify(set.access_token, jwks, {
    issuer: up.ims_url,
    audience: cred.client_id,
    algorithms: ['RS256', 'ES256', 'EdDSA']
  })
  assert.equal(protectedHeader.alg, 'RS256')
  assert.equal(payload.sub, cred.technical_account_id)

  // A tampered payload fails verification.
  const [h, , s] = set.access_token.split('.')
  const forged = Buffer.from(JSON.stringify({ ...payload, sub: 'admin' })).toString('base64url')
  await assert.rejects(jose.jwtVerify(`${h}.${forged}.${s}`, jwks))

  const active = await client.introspect(set.access_token)
  assert.equal(active.active, true)
  await client.revoke(set.access_token)
  const inactive = await client.introspect(set.access_token)
  assert.deepEqual(inactive, { active: false })
})
