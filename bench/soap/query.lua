-- wrk script: xtk:queryDef#ExecuteQuery on nms:recipient, authenticated by a session token
-- (BENCH_SESSION) or by an IMS bearer token (BENCH_BEARER).
wrk.method = "POST"
wrk.headers["Content-Type"] = "text/xml; charset=utf-8"
wrk.headers["SOAPAction"] = "xtk:queryDef#ExecuteQuery"
if os.getenv("BENCH_BEARER") then
  wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_BEARER")
else
  wrk.headers["X-Session-Token"] = os.getenv("BENCH_SESSION")
end
wrk.body = [[<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/"><SOAP-ENV:Body><m:ExecuteQuery xmlns:m="urn:xtk:queryDef"><sessiontoken/><document><queryDef schema="nms:recipient" operation="select" lineCount="10"><select><node expr="@id"/><node expr="@email"/></select><where><condition expr="@email like 'a%'"/></where></queryDef></document></m:ExecuteQuery></SOAP-ENV:Body></SOAP-ENV:Envelope>]]

-- Each wrk thread runs these callbacks in a Lua state of its own, and done() in yet another: a
-- thread counts its bad answers in its own global, and done() sums them through thread:get.
local threads = {}
setup = function(thread)
  table.insert(threads, thread)
end
bad = 0
response = function(status, headers, body)
  if status ~= 200 or not string.find(body, "recipient%-collection", 1) then bad = bad + 1 end
end
done = function(summary, latency, requests)
  local total = 0
  for _, thread in ipairs(threads) do total = total + (thread:get("bad") or 0) end
  io.write(string.format("RESULT rps=%.1f p50_ms=%.3f p99_ms=%.3f non200=%d errors=%d bad=%d\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.errors.status, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout, total))
end
