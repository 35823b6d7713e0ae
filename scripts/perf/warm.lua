-- One pass over every code in PERF_CODES (GET /{code}), then exit: fills the cache
-- before the cached-redirect runs. Run with one thread. (wrk's thread:stop() does not
-- end a run before -d, so the last response ends the process.)
package.path = (os.getenv("PERF_LUA_DIR") or "scripts/perf") .. "/?.lua;" .. package.path
local lib = require("lib")
local codes = lib.read_lines(os.getenv("PERF_CODES"))
local sent, seen = 0, 0

function request()
  sent = sent + 1
  return wrk.format("GET", "/" .. codes[((sent - 1) % #codes) + 1])
end
function response(status, headers, body)
  seen = seen + 1
  if seen >= #codes then
    io.write(string.format("warm: %d codes requested\n", seen))
    os.exit(0)
  end
end
