-- wrk script for bench/hook_intake.py: POST one JSON body, and stop each
-- thread after its share of requests. wrk's -d option bounds the time.
-- Arguments after `--`: requests per thread, then the body.

local limit = 0
local responses = 0
local request_text = nil

function init(args)
   limit = tonumber(args[1])
   local headers = {}
   headers["Host"] = wrk.host .. ":" .. wrk.port
   headers["Content-Type"] = "application/json"
   request_text = wrk.format("POST", wrk.path, headers, args[2])
end

function request()
   return request_text
end

function response(status, headers, body)
   responses = responses + 1
   if responses >= limit then
      wrk.thread:stop()
   end
end

function done(summary, latency, requests)
   local errors = summary.errors
   io.write(string.format(
      'BENCH_RESULT {"requests": %d, "duration_us": %d, "status_errors": %d, '
      .. '"socket_errors": %d, "latency_p50_us": %d, "latency_p99_us": %d}\n',
      summary.requests, summary.duration, errors.status,
      errors.connect + errors.read + errors.write + errors.timeout,
      latency:percentile(50), latency:percentile(99)))
end
