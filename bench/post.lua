-- wrk script for `make bench`: POSTs the requests listed in a file, one per
-- line as "path<TAB>body", each wrk thread taking every n-th line so that no
-- two requests in flight carry the same body. Bodies are used in turn and
-- start over when the file is exhausted.
--
--   wrk -t1 -c16 -d8s -s bench/post.lua URL -- FILE CONTENT_TYPE THREADS
--
-- done() prints one line "WRKJSON {...}" that bench/load.py reads.

local next_id = 0

function setup(thread)
  thread:set("tid", next_id)
  next_id = next_id + 1
end

function init(args)
  local path = args[1]
  wrk.headers["Content-Type"] = args[2]
  nthreads = tonumber(args[3])
  entries = {}
  for line in io.lines(path) do
    local tab = line:find("\t", 1, true)
    entries[#entries + 1] = { line:sub(1, tab - 1), line:sub(tab + 1) }
  end
  position = tid
end

function request()
  local entry = entries[(position % #entries) + 1]
  position = position + nthreads
  return wrk.format("POST", entry[1], nil, entry[2])
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d, ' ..
    '"mean_us": %.1f, "connect_errors": %d, "read_errors": %d, "write_errors": %d, "status_errors": %d, ' ..
    '"timeouts": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, latency.mean, e.connect, e.read, e.write, e.status, e.timeout))
end
