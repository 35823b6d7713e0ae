-- The old service's locustfile mix (the goose `mix` scenario's weights):
-- health 1, list users 8, list urls 6, list events 5, get user 4, get url 4,
-- urls by user 3, create user 2, create url 2, update user 1. Lists are pages 1-3 of
-- 20, as the locustfile paged them; ids are drawn from the seeded ranges.
package.path = (os.getenv("PERF_LUA_DIR") or "scripts/perf") .. "/?.lua;" .. package.path
local lib = require("lib")
local users = lib.env_int("PERF_USERS", 10000)
local max_id = lib.env_int("PERF_MAX_ID", 100000)
local json = { ["Content-Type"] = "application/json" }
local no, serial = 1, 0
local tag = tostring(os.time())

local function page() return math.random(3) end
local kinds = {
  { 1, function() return wrk.format("GET", "/health") end },
  { 8, function() return wrk.format("GET", "/users?page=" .. page() .. "&per_page=20") end },
  { 6, function() return wrk.format("GET", "/urls?page=" .. page() .. "&per_page=20") end },
  { 5, function() return wrk.format("GET", "/events?page=" .. page() .. "&per_page=20") end },
  { 4, function() return wrk.format("GET", "/users/" .. math.random(users)) end },
  { 4, function() return wrk.format("GET", "/urls/" .. math.random(max_id)) end },
  { 3, function() return wrk.format("GET", "/urls?user_id=" .. math.random(users)) end },
  { 2, function()
      serial = serial + 1
      return wrk.format("POST", "/users", json, string.format(
        '{"username":"perf%d","email":"perf.%s.%d.%d@example.com"}', serial, tag, no, serial))
    end },
  { 2, function()
      return wrk.format("POST", "/urls", json, string.format(
        '{"user_id":%d,"original_url":"https://example.com/mix/%d/%d"}', math.random(users), no, serial))
    end },
  { 1, function()
      return wrk.format("PUT", "/users/" .. math.random(users), json,
        string.format('{"username":"renamed%d"}', math.random(1000000)))
    end },
}
local wheel = {}
for _, k in ipairs(kinds) do
  for _ = 1, k[1] do wheel[#wheel + 1] = k[2] end
end

setup = lib.setup
function init(args) no = lib.seed() end
function request() return wheel[math.random(#wheel)]() end
done = lib.done
