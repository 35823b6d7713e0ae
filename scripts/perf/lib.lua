-- Shared by the wrk scripts of scripts/perf.sh: reading the code list, seeding the
-- random generator per thread, and a machine-readable summary line (PERFJSON ...)
-- that perf.sh parses. Latencies are wrk's, in microseconds.
local M = {}

function M.read_lines(path)
  local out = {}
  local f = assert(io.open(path, "r"), "cannot open " .. tostring(path))
  for line in f:lines() do
    local first = line:match("^([^\t]+)")
    if first and first ~= "" then out[#out + 1] = first end
  end
  f:close()
  assert(#out > 0, "no lines in " .. path)
  return out
end

function M.env_int(name, default)
  local v = os.getenv(name)
  return v and tonumber(v) or default
end

local thread_seq = 0
-- setup runs in the main Lua state, once per thread: number the threads.
function M.setup(thread)
  thread_seq = thread_seq + 1
  thread:set("thread_no", thread_seq)
end

function M.seed()
  local no = tonumber(thread_no) or 1
  math.randomseed(os.time() * 1000 + no * 7919)
  -- LuaJIT's first draws after seeding are poorly mixed.
  for _ = 1, 10 do math.random() end
  return no
end

function M.done(summary, latency, requests)
  local e = summary.errors
  local errors = e.connect + e.read + e.write + e.status + e.timeout
  local secs = summary.duration / 1e6
  io.write(string.format(
    'PERFJSON {"requests":%d,"seconds":%.3f,"rps":%.1f,"p50_us":%d,"p95_us":%d,"p99_us":%d,"max_us":%d,"errors":%d,"status_errors":%d,"timeouts":%d,"socket_errors":%d}\n',
    summary.requests, secs, summary.requests / secs,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.max,
    errors, e.status, e.timeout, e.connect + e.read + e.write))
end

-- A pool of pre-formatted requests, so wrk's own core spends its time on I/O, not Lua.
function M.pool(n, make)
  local reqs = {}
  for i = 1, n do reqs[i] = make(i) end
  local i = 0
  return function()
    i = i + 1
    if i > n then i = 1 end
    return reqs[i]
  end
end

return M
