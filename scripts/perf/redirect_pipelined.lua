-- GET /{code} like redirect.lua, but PERF_PIPELINE (16) requests written at once on
-- each connection (HTTP/1 pipelining): what HTTP1_PIPELINE_FLUSH is for.
package.path = (os.getenv("PERF_LUA_DIR") or "scripts/perf") .. "/?.lua;" .. package.path
local lib = require("lib")
local codes = lib.read_lines(os.getenv("PERF_CODES"))
local depth = lib.env_int("PERF_PIPELINE", 16)
local next_req

setup = lib.setup
function init(args)
  lib.seed()
  next_req = lib.pool(5000, function()
    local batch = {}
    for i = 1, depth do
      batch[i] = wrk.format("GET", "/" .. codes[math.random(#codes)])
    end
    return table.concat(batch)
  end)
end
function request() return next_req() end
done = lib.done
