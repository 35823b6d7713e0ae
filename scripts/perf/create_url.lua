-- POST /urls for users drawn at random from 1..PERF_USERS; the server generates the
-- code and writes the URL and its `created` event in one transaction.
package.path = (os.getenv("PERF_LUA_DIR") or "scripts/perf") .. "/?.lua;" .. package.path
local lib = require("lib")
local users = lib.env_int("PERF_USERS", 10000)
local next_req

setup = lib.setup
function init(args)
  local no = lib.seed()
  local headers = { ["Content-Type"] = "application/json" }
  next_req = lib.pool(20000, function(i)
    local body = string.format(
      '{"user_id":%d,"original_url":"https://example.com/perf/%d/%d","title":"perf"}',
      math.random(users), no, i)
    return wrk.format("POST", "/urls", headers, body)
  end)
end
function request() return next_req() end
done = lib.done
