-- wrk script for the Modelgate benchmark.
--
--   wrk ... -s bench/alias.lua <url> -- <mode> <targets file> <authorization header>
--
-- mode "200":   GET each alias, no If-None-Match: the full answer with a body.
-- mode "304":   GET each alias with If-None-Match set to its current ETag: 304, no body.
-- mode "floor": GET /healthz with the same headers: the server stack doing no work.
--
-- The targets file has one "<alias path>\t<etag>" line per (model, alias); bench/run.py writes
-- it after checking every ETag answers 304. Each thread cycles through all targets from its
-- own starting point, so requests spread over every model instead of hitting one row.
-- done() prints one JSON line that bench/run.py parses (times are in microseconds).

local thread_count = 0

function setup(thread)
  thread:set("thread_index", thread_count)
  thread_count = thread_count + 1
end

local requests = {}
local position = 1

function init(args)
  local mode, targets, authorization = args[1], args[2], args[3]
  if mode == "floor" then
    requests[1] = wrk.format("GET", "/healthz", { ["Authorization"] = authorization })
    return
  end
  for line in io.lines(targets) do
    local path, etag = line:match("^(%S+)\t(%S+)$")
    local headers = { ["Authorization"] = authorization }
    if mode == "304" then
      headers["If-None-Match"] = etag
    end
    requests[#requests + 1] = wrk.format("GET", path, headers)
  end
  -- Spread the threads' starting points over the list (thread_index is set by setup()).
  position = (thread_index * 7919) % #requests + 1
end

function request()
  local next_request = requests[position]
  position = position % #requests + 1
  return next_request
end

function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    '\nBENCH_JSON {"requests": %d, "duration_us": %d, "bytes": %d, '
      .. '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, '
      .. '"latency_us": {"mean": %.1f, "p50": %d, "p90": %d, "p99": %d, "max": %d}}\n',
    summary.requests, summary.duration, summary.bytes,
    errors.connect, errors.read, errors.write, errors.status, errors.timeout,
    latency.mean, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max
  ))
end
