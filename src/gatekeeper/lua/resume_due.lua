-- resume_due.lua: announce the block episodes whose window is over (plain ARGV, no library).
--
-- KEYS[1] the partition's open block episodes (decide.lua: scored by the end of the window
--         the customer was blocked in)   KEYS[2] the partition's alert stream
-- ARGV[1] now (epoch µs)   ARGV[2] at most this many episodes per call
--
-- A quota or spend cap that blocked a customer resets when its window ends; nothing else
-- would tell the customer they may call again. A sustained run of rate-limit refusals ends
-- after a quiet spell. Each episode due gets one 'resumed' alert (cause as its 'blocked' one,
-- used 0, the episode's span, time = its end: the score) and leaves the set, in one step: two
-- workers never announce one twice; its id is stable (the same episode, the same id). An
-- episode an admission closed first (a limit raised, a grant) is gone from the set already.
-- Returns how many were announced.

local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'WITHSCORES', 'LIMIT', 0,
  tonumber(ARGV[2]))
local function int(x) return string.format('%d', x) end
for i = 1, #due, 2 do
  local entry, ends = due[i], due[i + 1]
  -- customer, plan, feature, cause, limit, start_us, end_us (a rate limit's: its window)
  local e = cmsgpack.unpack(entry)
  redis.call('XADD', KEYS[2], '*',
    'id', redis.sha1hex(entry) .. '.reset', 'kind', 'resumed', 'customer', e[1], 'plan', e[2],
    'feature', e[3], 'threshold', '100', 'used', '0', 'limit', int(e[5]),
    'period_start_us', int(e[6]), 'period_end_us', ends, 'time_us', ends,
    'decision_id', '', 'cause', e[4])
  redis.call('ZREM', KEYS[1], entry)
end
return #due / 2
