-- ratelimit.lua: add hits to envoyproxy/ratelimit-style fixed-window counters (common.lua
-- prepended; only its ARGV unpacking (arg) and fmt() are used).
--
-- KEYS[i]  one counter per limited descriptor (KeySpace.ratelimit: the window start is part
--          of the key, so nothing is ever reset; all KEYS of one call share one hash slot)
-- ARGV[1]  a MessagePack array: for each key, hits then ttl_seconds
-- Returns  for each key, its count after adding (a string from fmt()).
--
-- Why Lua and not a pipeline of INCRBY + EXPIRE (as upstream does): the TTL is set only on
-- the first increment of a window, which needs INCRBY's reply inside the server, and the
-- counters of one request move in one atomic step (one round trip, nothing half-applied).
-- hits = 0 only reads the counter (upstream's per-descriptor `hits_addend: 0`), so looking
-- never creates a key.

local out = {}
for i = 1, #KEYS do
  local hits = arg()
  local ttl = arg()
  local n
  if hits > 0 then
    n = redis.call('INCRBY', KEYS[i], hits)
    if n == hits then redis.call('EXPIRE', KEYS[i], ttl) end
  else
    n = tonumber(redis.call('GET', KEYS[i]) or '0')
  end
  out[i] = fmt(n)
end
return out
