-- decide.lua: one decision, atomically (common.lua is prepended).
--
-- KEYS[1] usage stream of the partition     KEYS[2] alert stream of the partition
-- KEYS[3] idempotency record (read/written only when ARGV idem flag = 1)
-- KEYS[4] reservation record (written only when a meter reserves)
-- KEYS[5] the calling process's decision journal of this partition (store/journal.py; unused
--         when peeking): decision id -> what an admission consumed, 'v' once voided
-- KEYS[6] the partition's open block episodes (sorted set by period end: resume_due.lua)
-- KEYS[7..] counters, referenced by index from ARGV (grants, quotas, rates, billed units, spend)
--
-- ARGV[2] (optional, tracing on): the decision span's traceparent, added to every event (common.lua)
-- ARGV[1]: a MessagePack array (store/argpack.py): now_us, decision_id, customer, plan, request_id, idempotency_key, idem_flag,
--       idem_ttl_ms, reservation_ttl_ms, currency, mode, grace_ms, n_meters, meter..., spend
--   mode 0 = decide; 1 = force: record an admission decided elsewhere (fail-open replay),
--   nothing is denied; 2 = peek: report the counters, write nothing, emit nothing.
--   (layout written by gatekeeper/store/codec.py; read by read_meter/read_spend)
--
-- Checks every counter the request touches (grants, quota, rate, spend) and consumes all or
-- none. Denial priority: quota, then spend cap, then rate. On admission appends one usage
-- event per metered feature and the alert events of thresholds crossed, in this same script;
-- the first denial by a quota or spend cap appends a 'blocked' alert, the admission that ends
-- that block a 'resumed' one; a rate limit that refuses for a sustained span, a 'blocked' too.
--
-- Returns a flat array: 'N' (a new decision) or 'R' (replayed from the idempotency record),
-- outcome (A|D|P), decision_id, deny_kind, deny_meter, deny_rate, retry_after_us, cost_nano,
-- overage meter indexes (comma list), reserved (0|1), n_rows, then n_rows x (kind q|r|s,
-- meter, rate, limit, used, remaining, reset_us). Numbers go out as integer replies (no
-- formatting here, no parsing in the caller). The idempotency record holds that array as
-- MessagePack; a record written by an earlier version ('|'-joined text) is replayed as
-- {'R', text}.
--
-- The journal makes a decision whose reply was lost reversible (void.lua): every admission
-- leaves its receipt there (reserved flag, total cost, each meter's cost and grant takes;
-- everything else void.lua reads again from the same ARGV). An id already in the journal is
-- never applied twice: a fail-open replay ('force') of a call that did land answers 'A' and
-- changes nothing; a call that reaches Redis after its caller voided it ('v') answers 'V'.

local now, decision_id, customer, plan, request_id, idem_key, idem, idem_ttl, res_ttl, currency,
  mode = read_decision_head()
local force, peek = mode == 1, mode == 2
if peek then idem = false end
local journal = KEYS[5]

if not peek and redis.call('HEXISTS', journal, decision_id) == 1 then
  if force then return {'N', 'A', decision_id, '', 0, 0, 0, 0, '', 0, 0} end
  return {'V', 'D', decision_id, 'void', 0, 0, 0, 0, '', 0, 0}
end

if idem then
  local prev = redis.call('GET', KEYS[3])
  if prev then
    local first = string.byte(prev, 1)
    if first == 65 or first == 68 or first == 80 then return {'R', prev} end  -- A|, D|, P|
    local out = cmsgpack.unpack(prev)
    out[1] = 'R'
    return out
  end
end

local now_s = fmt(now)
local meters = {}
read_grace()
local n_meters = arg()
for j = 1, n_meters do meters[j] = read_meter() end
local spend = read_spend()

local total = 0
for _, m in ipairs(meters) do
  evaluate(m, now)
  total = total + m.cost
end
if spend.key then
  local v = redis.call('HMGET', spend.key, 'u', 'blk')
  spend.s0 = tonumber(v[1]) or 0
  spend.blk = v[2]
  spend.s1 = spend.s0 + total
  spend.deny = spend.block and spend.cap >= 0 and spend.s1 > spend.cap
end

local deny_kind, deny_meter, deny_rate, retry = '', 0, 0, 0
for j, m in ipairs(meters) do
  if m.q.key and m.q.deny then deny_kind, deny_meter = 'quota', j; break end
end
if deny_kind == '' and spend.deny then deny_kind = 'spend' end
if deny_kind == '' then
  for j, m in ipairs(meters) do
    for k, r in ipairs(m.rates) do
      if r.deny then deny_kind, deny_meter, deny_rate, retry = 'rate', j, k, r.retry; break end
    end
    if deny_kind ~= '' then break end
  end
end
if force then deny_kind, deny_meter, deny_rate, retry = '', 0, 0, 0 end
if deny_kind == 'quota' then retry = meters[deny_meter].q.end_us - now end
if deny_kind == 'spend' then retry = spend.end_us - now end

local admitted = deny_kind == '' and not peek
local overage = {}
local reserved = false
local n_alerts = 0

-- One alert on the partition's alert stream about meter m's quota (m nil: the spend cap).
-- `cause` (blocked/resumed): quota_exhausted, spend_cap or rate_limited; `used` defaults to
-- after this call; `span` {limit, start_us, end_us} replaces the quota's (a rate limit's run);
-- `at`: the absolute point (units, nano-units) a 'threshold' alert is about, not a percentage.
local function emit(kind, threshold, m, cause, used, span, at)
  n_alerts = n_alerts + 1
  local feature, limit, start_us, end_us
  if span then
    feature, limit, start_us, end_us = m.feature, span[1], span[2], span[3]
  elseif m then
    feature, limit = m.feature, m.q.limit
    used = used or m.q.u1
    start_us, end_us = m.q.start_us, m.q.end_us
  else
    feature, limit = '', spend.cap
    used = used or spend.s1
    start_us, end_us = spend.start_us, spend.end_us
  end
  local fields = {
    'id', decision_id .. '.a' .. n_alerts, 'kind', kind, 'customer', customer, 'plan', plan,
    'feature', feature, 'threshold', fmt(threshold), 'used', fmt(used), 'limit', fmt(limit),
    'period_start_us', fmt(start_us), 'period_end_us', fmt(end_us), 'time_us', fmt(now),
    'decision_id', decision_id}
  if cause then fields[#fields + 1] = 'cause'; fields[#fields + 1] = cause end
  if at then fields[#fields + 1] = 'at'; fields[#fields + 1] = fmt(at) end
  alert(KEYS[2], fields)
end

-- A block episode opens on a counter's first denial (quota, spend cap) and is announced once,
-- however many requests are refused meanwhile ('blk' = the limit it blocked at, HSETNX on the
-- counter). An admission closes it ('resumed') when the limit or cap changed since or a grant
-- paid for it; a smaller request that still fits under the same limit does not (the customer
-- is at its limit; one alert per episode). A new window is a new counter: a reset ends the
-- episode, announced by resume_due.lua once the window is over (the episode waits in KEYS[6],
-- scored by the window's end; 'blkm' on the counter names its entry there, so an admission
-- that closes the episode first takes it out), and its first denial opens a new one.
local function open_episode(key, feature, limit, cause, start_us, end_us)
  if end_us < 0 then return end  -- a window that never resets
  local entry = cmsgpack.pack({customer, plan, feature, cause, limit, start_us, end_us})
  redis.call('HSET', key, 'blkm', entry)
  redis.call('ZADD', KEYS[6], end_us, entry)
end

local function close_episode(key)
  local entry = redis.call('HGET', key, 'blkm')
  if entry then redis.call('ZREM', KEYS[6], entry) end
  redis.call('HDEL', key, 'blk', 'blkm')
end

-- Sustained rate limiting: a rate limit that refuses the customer again and again is a block
-- too. Each refusal is noted on the limit's episode hash (r.ekey: 'f' the run's first refusal,
-- 'x' the last one written, 'm' the episode's entry once announced), which expires RATE_QUIET
-- after the last refusal: a quiet spell that long ends the run. A run that lasts RATE_SUSTAIN
-- opens the episode: one 'blocked' (cause rate_limited) and its entry in KEYS[6], scored by
-- when it ends if no refusal follows (every refusal pushes that on), where resume_due.lua says
-- 'resumed'. A shorter burst says nothing. Under a flood of refusals it writes at most once a
-- second per limit (the hash then expires up to a second early: never before the quiet spell
-- its score promises has passed since a written refusal).
local RATE_SUSTAIN, RATE_QUIET, RATE_WRITE_EVERY = 10000000, 10000000, 1000000
local function rate_refused(m, r)
  local v = redis.call('HMGET', r.ekey, 'f', 'x', 'm')
  local first, written, entry = tonumber(v[1]), tonumber(v[2]), v[3]
  if written and now - written < RATE_WRITE_EVERY then return end
  -- over by the decisions' clock, though Redis's may not have expired it yet: a new run (an
  -- announced one ends at its score, where resume_due.lua finds it)
  if written and now - written >= RATE_QUIET then
    first, entry = nil, nil
    redis.call('DEL', r.ekey)
  end
  first = first or now
  local ends = now + RATE_QUIET
  if not entry and now - first >= RATE_SUSTAIN then
    entry = cmsgpack.pack({customer, plan, m.feature, 'rate_limited', r.limit, first, r.period})
    redis.call('HSET', r.ekey, 'm', entry)
    emit('blocked', 100, m, 'rate_limited', r.limit, {r.limit, first, ends})
  end
  redis.call('HSET', r.ekey, 'f', fmt(first), 'x', fmt(now))
  redis.call('PEXPIRE', r.ekey, fmt(RATE_QUIET / 1000))
  if entry then redis.call('ZADD', KEYS[6], fmt(ends), entry) end
end

if deny_kind ~= '' and not peek and not force then
  if deny_kind == 'quota' then
    local m = meters[deny_meter]
    if redis.call('HSETNX', m.q.key, 'blk', fmt(m.q.limit)) == 1 then
      if m.q.u0 == 0 then redis.call('PEXPIRE', m.q.key, ttl_until(m.q.exp_us, now)) end
      emit('blocked', 100, m, 'quota_exhausted', m.q.u0)
      open_episode(m.q.key, m.feature, m.q.limit, 'quota_exhausted', m.q.start_us, m.q.end_us)
    end
  elseif deny_kind == 'spend' then
    if redis.call('HSETNX', spend.key, 'blk', fmt(spend.cap)) == 1 then
      if spend.s0 == 0 then redis.call('PEXPIRE', spend.key, ttl_until(spend.exp_us, now)) end
      emit('blocked', 100, nil, 'spend_cap', spend.s0)
      open_episode(spend.key, '', spend.cap, 'spend_cap', spend.start_us, spend.end_us)
    end
  elseif deny_kind == 'rate' then
    rate_refused(meters[deny_meter], meters[deny_meter].rates[deny_rate])
  end
end

if admitted then
  for j, m in ipairs(meters) do
    local over = apply(m, now, emit)
    if over then overage[#overage + 1] = fmt(j) end
    if m.emit then
      local kind = 'usage'
      if m.reserve then kind = 'reservation'; reserved = true end
      redis.call('XADD', KEYS[1], '*',
        'id', decision_id .. '.' .. j, 'type', kind, 'customer', customer, 'plan', plan,
        'feature', m.feature, 'unit', m.unit, 'quantity', fmt(m.qty),
        'granted', fmt(m.granted), 'billable', fmt(m.billable), 'amount_nano', fmt(m.cost),
        'currency', currency, 'decision_id', decision_id, 'request_id', request_id,
        'idempotency_key', idem_key, 'time_us', now_s, 'overage', over and '1' or '0',
        unpack(TRACE))
    end
  end
  apply_spend(spend, total, emit, now)
  for _, m in ipairs(meters) do
    if m.q.blk and (m.q.blk ~= fmt(m.q.limit) or m.granted > 0) then
      close_episode(m.q.key)
      emit('resumed', 100, m, 'quota_exhausted')
    end
  end
  if spend.blk and spend.blk ~= fmt(spend.cap) and total > 0 then
    close_episode(spend.key)
    emit('resumed', 100, nil, 'spend_cap')
  end
  if reserved then
    local rk = KEYS[4]
    redis.call('HSET', rk, 't', fmt(now), 'x', fmt(now + res_ttl * 1000), 'd', decision_id)
    for _, m in ipairs(meters) do
      if m.reserve then
        redis.call('HSET', rk, m.feature .. ':q', fmt(m.qty), m.feature .. ':b', fmt(m.billable))
        for j, g in ipairs(m.grants) do
          if m.takes[j] > 0 then redis.call('HSET', rk, m.feature .. ':g:' .. g.id, fmt(m.takes[j])) end
        end
      end
    end
    -- kept an hour past expiry so a late settlement is told "expired", not "unknown"
    redis.call('PEXPIRE', rk, res_ttl + 3600000)
  end
  local receipt = {reserved and 1 or 0, total}
  for _, m in ipairs(meters) do
    receipt[#receipt + 1] = m.cost
    for j = 1, #m.grants do receipt[#receipt + 1] = m.takes[j] end
  end
  journal_put(journal, decision_id, cmsgpack.pack(receipt))
end

local outcome = 'D'
local cost = 0
if admitted then outcome = 'A'; cost = total end
if peek then outcome = 'P' end
local out = {'N', outcome, decision_id, deny_kind, deny_meter, deny_rate, math.ceil(retry), cost,
  table.concat(overage, ','), reserved and 1 or 0, 0}
local n = 11
local function row(kind, mi, ri, limit, used, remaining, reset_us)
  if remaining < 0 then remaining = 0 end
  out[n + 1], out[n + 2], out[n + 3], out[n + 4] = kind, mi, ri, limit
  out[n + 5], out[n + 6], out[n + 7] = used, remaining, reset_us
  n = n + 7
  out[11] = out[11] + 1
end
for j, m in ipairs(meters) do
  local q = m.q
  if q.key and q.limit >= 0 then
    local used = q.u0
    if admitted then used = q.u1 end
    row('q', j, 0, q.limit, used, q.limit - used, q.end_us)
  end
  for k, r in ipairs(m.rates) do
    local tat = r.tat0
    if admitted then tat = r.tat1 end
    local remaining = math.floor((r.period - (tat - now)) / r.t + 1e-9)
    if remaining > r.limit then remaining = r.limit end
    row('r', j, k, r.limit, r.limit - math.max(remaining, 0), remaining, math.ceil(tat))
  end
end
if spend.key and spend.cap >= 0 then
  local used = spend.s0
  if admitted then used = spend.s1 end
  row('s', 0, 0, spend.cap, used, spend.cap - used, spend.end_us)
end

if idem then redis.call('SET', KEYS[3], cmsgpack.pack(out), 'PX', idem_ttl) end
return out
