-- wrk script for the Modelgate vs MLflow comparison (bench/mlflow_compare.py).
--
--   wrk ... -s bench/mlflow.lua [-H 'Connection: close'] <url> -- <workload> <names file> <auth>
--
-- workload "alias":          GET registered-models/alias?name=<model>&alias=production
-- workload "latest":         POST registered-models/get-latest-versions {"name": <model>}
-- workload "search-models":  GET registered-models/search?filter=name LIKE '<prefix>%'
-- workload "search-versions": GET model-versions/search?filter=name='<model>'
-- workload "create":         POST model-versions/create {"name": <model>, "source": …}
--
-- The names file has one model name per line: for "search-models" the first line is the LIKE
-- prefix, for "search-versions" the first line is the model searched; the others cycle through
-- every name, each thread from its own starting point. <auth> is the Authorization header, or
-- "-" for none (MLflow runs without authentication).
--
-- Headers given with -H (wrk.headers, e.g. "Connection: close") are added to every request;
-- wrk.format() would drop them, since the requests pass their own header tables.
--
-- response() counts every answer whose status is not 2xx (wrk's own "status" error counts only
-- >= 400); done() prints one JSON line that bench/mlflow_compare.py parses (times in µs).

local API = "/api/2.0/mlflow/"

local threads = {}

function setup(thread)
  thread:set("thread_index", #threads)
  threads[#threads + 1] = thread
end

local function urlencode(text)
  return (text:gsub("[^%w%-%._~]", function(char)
    return string.format("%%%02X", string.byte(char))
  end))
end

local function json_string(text)
  return '"' .. text:gsub('[%c"\\]', function(char)
    return string.format("\\u%04x", string.byte(char))
  end) .. '"'
end

local requests = {}
local position = 1
non2xx = 0

function init(args)
  local workload, names_file, authorization = args[1], args[2], args[3]
  local names = {}
  for line in io.lines(names_file) do
    names[#names + 1] = line
  end

  local function headers(extra)
    local all = {}
    for name, value in pairs(wrk.headers) do
      all[name] = value
    end
    if authorization ~= "-" then
      all["Authorization"] = authorization
    end
    for name, value in pairs(extra or {}) do
      all[name] = value
    end
    return all
  end
  local json = { ["Content-Type"] = "application/json" }

  if workload == "search-models" then
    local filter = "name LIKE '" .. names[1] .. "%'"
    local path = API .. "registered-models/search?filter=" .. urlencode(filter) .. "&max_results=100"
    requests[1] = wrk.format("GET", path, headers())
  elseif workload == "search-versions" then
    local filter = "name='" .. names[1] .. "'"
    requests[1] = wrk.format("GET", API .. "model-versions/search?filter=" .. urlencode(filter),
      headers())
  else
    for _, name in ipairs(names) do
      if workload == "alias" then
        local path = API .. "registered-models/alias?name=" .. urlencode(name) .. "&alias=production"
        requests[#requests + 1] = wrk.format("GET", path, headers())
      elseif workload == "latest" then
        local body = '{"name": ' .. json_string(name) .. "}"
        requests[#requests + 1] = wrk.format(
          "POST", API .. "registered-models/get-latest-versions", headers(json), body)
      elseif workload == "create" then
        local body = '{"name": ' .. json_string(name)
          .. ', "source": ' .. json_string("s3://bench-artifacts/" .. name .. "/new")
          .. ', "description": "Created under load."}'
        requests[#requests + 1] = wrk.format(
          "POST", API .. "model-versions/create", headers(json), body)
      else
        error("unknown workload " .. workload)
      end
    end
  end
  -- Spread the threads' starting points over the list (thread_index is set by setup()).
  position = (thread_index * 7919) % #requests + 1
end

function request()
  local next_request = requests[position]
  position = position % #requests + 1
  return next_request
end

function response(status, headers, body)
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
  end
end

function done(summary, latency, requests)
  local errors = summary.errors
  local not_2xx = 0
  for _, thread in ipairs(threads) do
    not_2xx = not_2xx + thread:get("non2xx")
  end
  io.write(string.format(
    '\nBENCH_JSON {"requests": %d, "duration_us": %d, "bytes": %d, '
      .. '"errors": {"connect": %d, "read": %d, "write": %d, "timeout": %d, "non2xx": %d}, '
      .. '"latency_us": {"mean": %.1f, "p50": %d, "p90": %d, "p99": %d, "max": %d}}\n',
    summary.requests, summary.duration, summary.bytes,
    errors.connect, errors.read, errors.write, errors.timeout, not_2xx,
    latency.mean, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max
  ))
end
