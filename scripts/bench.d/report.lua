-- Shared by every scenario: one machine-readable result line.
-- Env: BODY (POST body, empty for GET), TOKEN (bearer token, optional),
-- HEADERS (more headers, one `Name: value` per line, e.g. a SigV4 signature).
local body = os.getenv("BODY") or ""
local token = os.getenv("TOKEN") or ""
if body ~= "" then
  wrk.method = "POST"
  wrk.body = body
  wrk.headers["Content-Type"] = "application/json"
end
if token ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. token
end
for line in (os.getenv("HEADERS") or ""):gmatch("[^\n]+") do
  local name, value = line:match("^([^:]+):%s*(.*)$")
  if name then wrk.headers[name] = value end
end

done = function(summary, latency, requests)
  local secs = summary.duration / 1e6
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout
  io.write(string.format("RESULT rps=%.0f p50_us=%d p99_us=%d non2xx=%d socket_errors=%d\n",
    summary.requests / secs, latency:percentile(50), latency:percentile(99), summary.errors.status, errors))
end
