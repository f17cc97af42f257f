-- blocked_now.lua: the partition's block episodes still open at ARGV[1] (plain ARGV, no
-- library; reads only).
--
-- KEYS[1] the partition's open block episodes (decide.lua: scored by the end of the window
--         the customer was blocked in)
-- ARGV[1] now (epoch µs)   ARGV[2] at most this many episodes
--
-- An episode whose window ended is over (resume_due.lua announces it), whether or not it was
-- announced yet: only scores after `now` count. Returns {count, then up to ARGV[2] x
-- (customer, plan, feature, cause, limit, period_start_us, period_end_us)}, soonest end first.

local after = '(' .. ARGV[1]
local out = {redis.call('ZCOUNT', KEYS[1], after, '+inf')}
local open = redis.call('ZRANGEBYSCORE', KEYS[1], after, '+inf', 'LIMIT', 0, tonumber(ARGV[2]))
for _, entry in ipairs(open) do
  local e = cmsgpack.unpack(entry)  -- customer, plan, feature, cause, limit, start_us, end_us
  for i = 1, 7 do out[#out + 1] = e[i] end
end
return out
