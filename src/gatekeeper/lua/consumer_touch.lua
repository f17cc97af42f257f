-- consumer_touch.lua: reset the idle time of entries a consumer still holds, and only those.
--
-- KEYS[1] the stream   ARGV[1] the group   ARGV[2] the consumer   ARGV[3..] entry ids
-- Returns the ids the consumer no longer holds (acknowledged, or taken over by another
-- consumer that found it dead).
--
-- Why Lua: XCLAIM with min-idle 0 takes an entry from whoever holds it; a consumer that was
-- taken for dead (a long pause) must not take its entries back from the one that took them
-- over. The owner check and the claim are one step.

local lost = {}
for i = 3, #ARGV do
  local held = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1, ARGV[2])
  if #held > 0 then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
  else
    lost[#lost + 1] = ARGV[i]
  end
end
return lost
