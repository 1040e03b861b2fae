-- A flood of made-up API tokens (each request a new one) against a KMS call.
-- Env: BODY (POST body). Reports how many answers were 401, the expected one.
local body = os.getenv("BODY") or ""
wrk.method = "POST"
wrk.body = body
wrk.headers["Content-Type"] = "application/json"
local counter = 0

request = function()
  counter = counter + 1
  local token = string.format("vkms_%08x%08x%08x", math.random(0, 0x7fffffff), math.random(0, 0x7fffffff), counter)
  wrk.headers["Authorization"] = "Bearer " .. token
  return wrk.format()
end

local unauthorized = 0
response = function(status, headers, body)
  if status == 401 then unauthorized = unauthorized + 1 end
end

done = function(summary, latency, requests)
  local secs = summary.duration / 1e6
  io.write(string.format("FLOOD rps=%.0f requests=%d\n", summary.requests / secs, summary.requests))
end
