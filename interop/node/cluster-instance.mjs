// The instance behind the balancer, driven by @adobe/acc-js-sdk (unmodified) while its nodes
// restart: one client signed in natively keeps its session, another calls with an IMS bearer
// token, each making queries until STOP (a file) appears. A call that fails is counted, and the
// client signs in again. Prints one JSON line: calls and failures per kind.
// env: INSTANCE_URL, ADMIN_PASSWORD, BEARER, STOP (and NODE_EXTRA_CA_CERTS for the balancer's
// certificate).
import fs from 'node:fs'
import sdk from '@adobe/acc-js-sdk'

const url = process.env.INSTANCE_URL
const counts = { session: 0, bearer: 0 }
const failures = { session: 0, bearer: 0 }
const samples = []

async function drive (kind, parameters) {
  let client = null
  while (!fs.existsSync(process.env.STOP)) {
    try {
      if (!client) {
        client = await sdk.init(parameters())
        await client.logon()
      }
      const schema = kind === 'session' ? 'xtk:operator' : 'nms:recipient'
      const n = await client.NLWS.xtkQueryDef.create({ schema, operation: 'count' }).executeQuery()
      if (!(Number(n.count) >= 1)) throw new Error(`unexpected count ${JSON.stringify(n)}`)
      counts[kind] += 1
    } catch (e) {
      failures[kind] += 1
      if (samples.length < 10) samples.push(`${kind}: ${e.message || e}`)
      client = null
    }
  }
}

await Promise.all([
  drive('session', () => sdk.ConnectionParameters.ofUserAndPassword(url, 'admin', process.env.ADMIN_PASSWORD)),
  drive('bearer', () => sdk.ConnectionParameters.ofBearerToken(url, process.env.BEARER))
])
console.log(JSON.stringify({ counts, failures, samples }))
