-- GET /{code} for codes drawn at random from PERF_CODES (active seeded codes, one
-- per line). The same script drives the server and the ceiling.
package.path = (os.getenv("PERF_LUA_DIR") or "scripts/perf") .. "/?.lua;" .. package.path
local lib = require("lib")
local codes = lib.read_lines(os.getenv("PERF_CODES"))
local next_req

setup = lib.setup
function init(args)
  lib.seed()
  next_req = lib.pool(50000, function()
    return wrk.format("GET", "/" .. codes[math.random(#codes)])
  end)
end
function request() return next_req() end
done = lib.done
