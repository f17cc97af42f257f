-- consumer_release.lua: remove a dead consumer from a stream's consumer group once it holds
-- nothing there.
--
-- KEYS[1] the stream   ARGV[1] the group   ARGV[2] the consumer
-- Returns 1 when the consumer was removed (or was not there), 0 when it still holds entries.
--
-- Why Lua: XGROUP DELCONSUMER drops the consumer's pending entries with it (nobody could claim
-- them again); checking that it holds none and deleting it must be one step, or an entry
-- delivered to it in between would be lost.

if #redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2]) > 0 then
  return 0
end
redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
return 1
