// node oidc-provider configured like our IMS for the benchmark: one confidential client with the
// client_credentials grant, client_secret_basic, JWT access tokens signed with BENCH_ALG, in-memory
// store, plain HTTP on loopback.
import Provider from 'oidc-provider'
import { generateKeyPair } from 'node:crypto'
import { promisify } from 'node:util'

const alg = process.env.BENCH_ALG || 'RS256'
const port = Number(process.env.BENCH_PORT || 3000)
const gen = promisify(generateKeyPair)
const { privateKey } = alg === 'RS256'
  ? await gen('rsa', { modulusLength: 2048 })
  : await gen('ec', { namedCurve: 'P-256' })
const jwk = { ...privateKey.export({ format: 'jwk' }), alg, use: 'sig', kid: 'bench' }

const provider = new Provider(`http://127.0.0.1:${port}`, {
  clients: [{
    client_id: 'bench',
    client_secret: 'bench-secret-bench-secret-bench-secret',
    grant_types: ['client_credentials'],
    redirect_uris: [],
    response_types: [],
    token_endpoint_auth_method: 'client_secret_basic',
    id_token_signed_response_alg: alg
  }],
  jwks: { keys: [jwk] },
  features: {
    clientCredentials: { enabled: true },
    devInteractions: { enabled: false },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => 'urn:bench:api',
      useGrantedResource: () => true,
      getResourceServerInfo: () => ({
        scope: 'openid api',
        audience: 'urn:bench:api',
        accessTokenTTL: 86400,
        accessTokenFormat: 'jwt',
        jwt: { sign: { alg } }
      })
    }
  },
  scopes: ['openid', 'api']
})
provider.listen(port, '127.0.0.1', () => console.log(`peer listening on ${port} (${alg})`))
