// @adobe/aio-lib-console and @adobe/aio-lib-ims, unmodified, against a running `ims up`: a
// project, an OAuth Server-to-Server credential subscribed to the Campaign API with a product
// profile, its secrets and workspace file, then a token for it through an aio context.
const { test } = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')

// aio keeps contexts in its configuration files: a scratch home for them (the global ones; a
// local context would be written to the working directory).
process.env.XDG_CONFIG_HOME = fs.mkdtempSync(path.join(os.tmpdir(), 'aio-config-'))
const consoleLib = require('@adobe/aio-lib-console')
const { Ims, context, getToken, getTokenData } = require('@adobe/aio-lib-ims')

const up = JSON.parse(fs.readFileSync(process.env.INTEROP_UP_JSON, 'utf8'))
const io = JSON.parse(fs.readFileSync(process.env.INTEROP_CONSOLE_CREDENTIAL, 'utf8'))
const profileName = process.env.INTEROP_UMAPI_PROFILE

async function consoleClient () {
  const ims = new Ims('prod')
  ims.endpoint = up.ims_url
  const scopes = ['openid', 'AdobeID', 'read_organizations', 'adobeio_api', 'read_client_secret', 'manage_client_secrets']
  const result = await ims.getAccessTokenByClientCredentials(io.client_id, io.client_secret, up.org_id, scopes)
  return pointedAtUs(await consoleLib.init(result.access_token.token, io.client_id, 'prod'))
}

// The library forces the vendor's host in its own interceptor; ours rewrites after it.
function pointedAtUs (client) {
  const theirs = client.sdk.requestInterceptor
  const base = new URL(up.ims_url)
  client.sdk.requestInterceptor = (req) => {
    const out = theirs(req)
    const url = new URL(out.url)
    url.protocol = base.protocol
    url.host = base.host
    out.url = url.href
    return out
  }
  return client
}

test('a project, an OAuth Server-to-Server credential with a product profile, and a token for it', async () => {
  const sdk = await consoleClient()
  const orgs = (await sdk.getOrganizations()).body
  const org = orgs.find(o => o.code === up.org_id)
  assert.ok(org, `our organisation among ${JSON.stringify(orgs)}`)
  assert.match(org.id, /^\d+$/)

  const name = `interop-${Date.now()}`
  const created = await sdk.createProject(org.id, { name, title: 'Interop project', description: 'made by aio-lib-console', type: 'default' })
  assert.equal(created.status, 201)
  const { projectId, workspaceId } = created.body
  const project = (await sdk.getProject(org.id, projectId)).body
  assert.equal(project.name, name)
  // editProject: a new name and title, kept; a title alone is refused.
  const edited = await sdk.editProject(org.id, projectId, { name: `${name}-renamed`, title: 'Renamed interop project' })
  assert.equal(edited.status, 200)
  const renamed = (await sdk.getProject(org.id, projectId)).body
  assert.deepEqual([renamed.name, renamed.title, renamed.description], [`${name}-renamed`, 'Renamed interop project', 'made by aio-lib-console'])
  await assert.rejects(sdk.editProject(org.id, projectId, { title: 'no name' }), /400|name and title/)
  const workspaces = (await sdk.getWorkspacesForProject(org.id, projectId)).body
  assert.equal(workspaces[0].id, workspaceId)

  const credential = (await sdk.createOAuthServerToServerCredential(org.id, projectId, workspaceId, 'Interop S2S', 'an integration')).body
  assert.equal(credential.apiKey, credential.id)
  const listed = (await sdk.getCredentials(org.id, projectId, workspaceId)).body
  assert.equal(listed[0].id_integration, credential.id)
  assert.equal(listed[0].credential_type, 'oauth_server_to_server')

  const services = (await sdk.getServicesForOrg(org.id)).body
  const campaign = services.find(s => s.code === 'CampaignSDK')
  const config = campaign.properties.licenseConfigs.find(c => c.name === profileName)
  assert.ok(config, `the profile ${profileName} is offered`)
  const subscribed = (await sdk.subscribeCredentialToServices(org.id, projectId, workspaceId, 'oauth_server_to_server', credential.id, [
    { sdkCode: 'CampaignSDK', licenseConfigs: [{ id: config.id, productId: config.productId, op: 'add' }], roles: null }
  ])).body
  assert.deepEqual(subscribed.sdkList, ['CampaignSDK'])

  const integration = (await sdk.getIntegration(org.id, credential.id)).body
  assert.equal(integration.apikey, credential.id)
  assert.match(integration.technicalAccountId, /@techacct\./)
  assert.equal(integration.serviceProperties[0].licenseConfigs[0].name, profileName)

  const secrets = (await sdk.getIntegrationSecrets(org.id, credential.id)).body
  const secret = secrets.client_secrets[0].client_secret
  assert.match(secret, /^imscs_/)
  const workspaceFile = (await sdk.downloadWorkspaceJson(org.id, projectId, workspaceId)).body
  const s2s = workspaceFile.project.workspace.details.credentials[0].oauth_server_to_server
  assert.equal(s2s.client_id, credential.id)
  assert.equal(s2s.technical_account_id, integration.technicalAccountId)
  assert.equal(workspaceFile.project.org.ims_org_id, up.org_id)
  assert.ok(!JSON.stringify(workspaceFile).includes(secret), 'a secret is shown once')

  // aio-lib-ims: a context with the credential, then getToken.
  Ims.prototype.getApiUrl = api => up.ims_url + api
  await context.set('campaign-s2s', {
    client_id: credential.id,
    client_secrets: [secret],
    technical_account_id: s2s.technical_account_id,
    technical_account_email: s2s.technical_account_email,
    ims_org_id: up.org_id,
    scopes: s2s.scopes
  })
  const token = await getToken('campaign-s2s')
  const data = getTokenData(token)
  assert.equal(data.client_id, credential.id)
  assert.equal(data.user_id, integration.technicalAccountId)
  const ims = new Ims('prod')
  const profile = await ims.get('/ims/profile/v1', token, { product_context: 'dma_campaign_classic' })
  const labels = profile.projectedProductContext.map(p => p.prodCtx.label)
  assert.deepEqual(labels, [profileName], 'the token carries the subscribed product profile')

  // Deleting the credential: its secret no longer yields tokens.
  await sdk.deleteCredentialById(org.id, projectId, workspaceId, credential.id)
  await assert.rejects(ims.getAccessTokenByClientCredentials(credential.id, secret, up.org_id, ['openid']), /invalid_client/)
})

test('a credential without the I/O Management API is refused by the console API', async () => {
  const umapi = JSON.parse(fs.readFileSync(process.env.INTEROP_UMAPI_CREDENTIAL, 'utf8'))
  const ims = new Ims('prod')
  ims.endpoint = up.ims_url
  const result = await ims.getAccessTokenByClientCredentials(umapi.client_id, umapi.client_secret, up.org_id, ['openid'])
  const sdk = pointedAtUs(await consoleLib.init(result.access_token.token, umapi.client_id, 'prod'))
  await assert.rejects(sdk.getOrganizations(), /403/)
})
