-- wrk script: POST a client_credentials grant with HTTP Basic client authentication.
-- BENCH_AUTH is base64(client_id:client_secret); BENCH_CLOSE=1 asks for a new connection per request.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = "Basic " .. os.getenv("BENCH_AUTH")
if os.getenv("BENCH_CLOSE") == "1" then
  wrk.headers["Connection"] = "close"
end
wrk.body = "grant_type=client_credentials&scope=" .. (os.getenv("BENCH_SCOPE") or "openid")

-- Each wrk thread counts in a Lua state of its own; done() sums the counts through thread:get.
local threads = {}
setup = function(thread)
  table.insert(threads, thread)
end
failures = 0
response = function(status, headers, body)
  if status ~= 200 then failures = failures + 1 end
end
done = function(summary, latency, requests)
  local total = 0
  for _, thread in ipairs(threads) do total = total + (thread:get("failures") or 0) end
  io.write(string.format("RESULT rps=%.1f p50_ms=%.3f p99_ms=%.3f non200=%d errors=%d\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    total, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
