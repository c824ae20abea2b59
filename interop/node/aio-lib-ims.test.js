// @adobe/aio-lib-ims, unmodified, against a running `ims up`: the calls an integration makes.
const { test } = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const { Ims, getTokenData } = require('@adobe/aio-lib-ims')

const up = JSON.parse(fs.readFileSync(process.env.INTEROP_UP_JSON, 'utf8'))
const cred = JSON.parse(fs.readFileSync(process.env.INTEROP_CREDENTIAL, 'utf8'))

function imsClient () {
  const ims = new Ims('prod')
  // The library's hosts are fixed; its documented way to point elsewhere is the instance endpoint.
  ims.endpoint = up.ims_url
  return ims
}

test('getAccessTokenByClientCredentials yields a token the library accepts', async () => {
  const ims = imsClient()
  const result = await ims.getAccessTokenByClientCredentials(cred.client_id, cred.client_secret, up.org_id, ['openid', 'AdobeID', 'read_organizations'])
  const token = result.access_token.token
  assert.ok(token, 'an access token')
  // The library computes expiry from created_at + expires_in (milliseconds as strings).
  assert.ok(result.access_token.expiry > Date.now() + 10 * 60 * 1000, 'more than ten minutes of life')
  assert.equal(result.payload.token_type, 'bearer')
  const data = getTokenData(token)
  assert.equal(data.type, 'access_token')
  assert.equal(data.client_id, cred.client_id)
  assert.equal(data.user_id, cred.technical_account_id)
  assert.equal(data.as, 'ims-na1')
  assert.equal(data.scope, 'openid,AdobeID,read_organizations')

  const validation = await ims.validateToken(token)
  assert.equal(validation.valid, true)
  assert.equal(validation.token.client_id, cred.client_id)

  const orgs = await ims.getOrganizations(token)
  assert.equal(orgs[0].orgRef.ident + '@' + orgs[0].orgRef.authSrc, up.org_id)

  // Ims.fromToken accepts only the authorities it knows (ims-na1 / ims-na1-stg1).
  const fromToken = await Ims.fromToken(token)
  assert.equal(fromToken.token, token)

  await ims.invalidateToken(token, cred.client_id, cred.client_secret)
  const after = await ims.validateToken(token)
  assert.equal(after.valid, false)
})

test('a wrong secret is refused with the OAuth error', async () => {
  const ims = imsClient()
  await assert.rejects(
    ims.getAccessTokenByClientCredentials(cred.client_id, 'imscs_wrong', up.org_id, ['openid']),
    /invalid_client/
  )
})

test('a scope outside the credential is refused', async () => {
  const ims = imsClient()
  await assert.rejects(
    ims.getAccessTokenByClientCredentials(cred.client_id, cred.client_secret, up.org_id, ['openid', 'not_granted']),
    /invalid_scope/
  )
})
