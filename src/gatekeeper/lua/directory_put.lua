-- directory_put.lua: write or delete one customer's directory record, if it is still at the
-- version the caller read, together with the partition's indexes, an audit record and the
-- invalidation message (common.lua prepended; unused here).
--
-- KEYS[1] the record (hash: v = version, r = record JSON)   KEYS[2] the partition's id index
-- KEYS[3] the partition's audit stream   KEYS[4] the old plan's member set (read before)
-- KEYS[5] the new plan's member set (KEYS[4] again when the plan is unchanged or deleted)
--
-- ARGV[1] expected version (0 = the record must not exist yet)
-- ARGV[2] the new record JSON ('' = delete the record)
-- ARGV[3] customer id   ARGV[4] invalidation channel   ARGV[5] invalidation message
-- ARGV[6] number of audit field/value pairs that follow (0 = no audit record), then the pairs
--
-- Returns the new version (0 after a delete), or -1 - current version when the record moved on
-- since the caller read it (nothing written; the caller reads again and recomputes).
--
-- Lua rather than WATCH/MULTI: a compare-and-set in one call, so the bulk paths (import, the
-- policy file's seed customers) pipeline thousands of them; every key is in the customer's slot.

local current = tonumber(redis.call('HGET', KEYS[1], 'v') or '0')
if current ~= tonumber(ARGV[1]) then
  return -1 - current
end
local id = ARGV[3]
local version = 0
if ARGV[2] == '' then
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', KEYS[2], id)
  redis.call('ZREM', KEYS[4], id)
else
  version = current + 1
  redis.call('HSET', KEYS[1], 'v', version, 'r', ARGV[2])
  redis.call('ZADD', KEYS[2], 0, id)
  if KEYS[4] ~= KEYS[5] then
    redis.call('ZREM', KEYS[4], id)
  end
  redis.call('ZADD', KEYS[5], 0, id)
end
local pairs_n = tonumber(ARGV[6])
if pairs_n > 0 then
  local fields = {}
  for i = 1, pairs_n * 2 do
    fields[i] = ARGV[6 + i]
  end
  redis.call('XADD', KEYS[3], '*', unpack(fields))
end
redis.call('PUBLISH', ARGV[4], ARGV[5])
return version
