-- wrk script for bench/checkin_bench.py --client wrk: each request a check-in of the next
-- registered device (tokens, one per line, in the file named by FEDGE_TOKENS), round robin.
local tokens = {}
for line in io.lines(os.getenv("FEDGE_TOKENS")) do tokens[#tokens + 1] = "Bearer " .. line end
local body = '{"state": {"charging": true, "unmetered": true, "idle": true, "battery": 0.9}}'
local next_index = 0

request = function()
  next_index = next_index % #tokens + 1
  return wrk.format("POST", "/v1/checkin",
    {["Content-Type"] = "application/json", ["Authorization"] = tokens[next_index]}, body)
end

done = function(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format("FEDGE requests=%d duration_us=%d p50_us=%d p99_us=%d max_us=%d non2xx=%d errors=%d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.max,
    errors.status, errors.connect + errors.read + errors.write + errors.timeout))
end
