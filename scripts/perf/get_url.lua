-- GET /urls/{id} for ids drawn at random from 1..PERF_MAX_ID.
package.path = (os.getenv("PERF_LUA_DIR") or "scripts/perf") .. "/?.lua;" .. package.path
local lib = require("lib")
local max_id = lib.env_int("PERF_MAX_ID", 100000)
local next_req

setup = lib.setup
function init(args)
  lib.seed()
  next_req = lib.pool(50000, function()
    return wrk.format("GET", "/urls/" .. math.random(max_id))
  end)
end
function request() return next_req() end
done = lib.done
