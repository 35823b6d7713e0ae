-- GET /{code} with codes drawn Zipf-skewed (s = PERF_ZIPF_S, default 1.0) by rank in
-- PERF_CODES order: a shortener's real traffic, a few links hot and a long tail.
-- The server, the ceiling and the click measurements share it.
package.path = (os.getenv("PERF_LUA_DIR") or "scripts/perf") .. "/?.lua;" .. package.path
local lib = require("lib")
local codes = lib.read_lines(os.getenv("PERF_CODES"))
local s = tonumber(os.getenv("PERF_ZIPF_S") or "1.0")
local ua = os.getenv("PERF_USER_AGENT")
local next_req

-- The cumulative weights 1/k^s, once; a draw is a binary search.
local cdf, total = {}, 0
for k = 1, #codes do
  total = total + 1 / (k ^ s)
  cdf[k] = total
end
local function draw()
  local x, lo, hi = math.random() * total, 1, #codes
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    if cdf[mid] < x then lo = mid + 1 else hi = mid end
  end
  return codes[lo]
end

setup = lib.setup
function init(args)
  lib.seed()
  local headers = ua and { ["User-Agent"] = ua } or nil
  next_req = lib.pool(50000, function()
    return wrk.format("GET", "/" .. draw(), headers)
  end)
end
function request() return next_req() end
done = lib.done
