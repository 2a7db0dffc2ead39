-- wrk script for bench/hook_intake.py: POST one JSON body, and stop a
-- thread once it received its share of --max-requests. wrk's -d option sets
-- the duration, and wrk waits that long even when every thread stopped
-- early. So the summary counts capped threads, and the caller rejects a
-- measurement that has any.
-- Arguments after `--`: the request cap per thread, then the body.

local threads = {}

function setup(thread)
   table.insert(threads, thread)
end

function init(args)
   limit = tonumber(args[1])
   responses = 0
   capped = 0
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
      capped = 1
      wrk.thread:stop()
   end
end

function done(summary, latency, requests)
   local capped_threads = 0
   for _, thread in ipairs(threads) do
      capped_threads = capped_threads + thread:get("capped")
   end
   local errors = summary.errors
   io.write(string.format(
      'BENCH_RESULT {"requests": %d, "duration_us": %d, "status_errors": %d, "socket_errors": %d, '
      .. '"capped_threads": %d, "latency_p50_us": %d, "latency_p99_us": %d}\n',
      summary.requests, summary.duration, errors.status,
      errors.connect + errors.read + errors.write + errors.timeout,
      capped_threads, latency:percentile(50), latency:percentile(99)))
end
