-- stream_lag.lua: how many entries of a stream a consumer group has not been delivered yet,
-- counted up to a cap, for Redis 6.2 (whose XINFO GROUPS has no `lag`; 7.0 gives it directly).
--
-- KEYS[1] the stream   ARGV[1] the group's last-delivered-id   ARGV[2] the cap (an integer)
-- Returns the number of entries with an id above ARGV[1], at most ARGV[2].
--
-- Why Lua: XRANGE would send every undelivered entry to the client only to be counted; here
-- only the count leaves Redis. The cap bounds the work (a dashboard read, once a second).

return #redis.call('XRANGE', KEYS[1], '(' .. ARGV[1], '+', 'COUNT', ARGV[2])
