-- blocked_now.lua: the partition's block episodes still open at ARGV[1] (plain ARGV, no
-- library; reads only).
--
-- KEYS[1] the partition's open block episodes (decide.lua: scored by the end of the window
--         the customer was blocked in)
-- ARGV[1] now (epoch µs)   ARGV[2] at most this many episodes
--
-- An episode whose end passed is over (resume_due.lua announces it), whether or not it was
-- announced yet: only scores after `now` count. Returns {count, then up to ARGV[2] x
-- (customer, plan, feature, cause, limit, start_us, end_us)}, soonest end first; the end is
-- the score (a window's end, or when a run of rate-limit refusals ends without another).

local after = '(' .. ARGV[1]
local out = {redis.call('ZCOUNT', KEYS[1], after, '+inf')}
local open = redis.call('ZRANGEBYSCORE', KEYS[1], after, '+inf', 'WITHSCORES', 'LIMIT', 0,
  tonumber(ARGV[2]))
for i = 1, #open, 2 do
  local e = cmsgpack.unpack(open[i])  -- customer, plan, feature, cause, limit, start_us, end_us
  for k = 1, 6 do out[#out + 1] = e[k] end
  out[#out + 1] = open[i + 1]
end
return out
