-- common.lua: helpers shared by decide.lua and settle.lua (prepended to each at load time).
--
-- Why Lua and not MULTI/EXEC: a decision reads several counters and writes all or none of
-- them depending on what it read; MULTI cannot branch on reads, WATCH would retry under
-- contention. One script is one atomic step on one hash slot.
--
-- Numbers: Lua numbers are doubles, exact for integers below 2^53. Every integer leaves the
-- script through fmt() (string.format %d), never tostring() (14 significant digits).

-- ARGV[1] carries every argument as one MessagePack array (store/argpack.py), decoded in C by
-- cmsgpack: numbers arrive as numbers, strings as strings. (A \31-separated string split with
-- gmatch and converted with tonumber here cost ~40 % of the decision script.)
local A = cmsgpack.unpack(ARGV[1])
local ai = 0
local function arg() ai = ai + 1; return A[ai] end
local function fmt(x) return string.format('%d', x) end

-- decide.lua's head (void.lua reads the same call), in this order: now, decision id, customer,
-- plan, request id, idempotency key, idempotency flag (a boolean), idempotency TTL,
-- reservation TTL, currency, mode. Several results, not a table: nothing allocated per call.
local function read_decision_head()
  local now = arg()
  local decision_id = arg()
  local customer = arg()
  local plan = arg()
  local request_id = arg()
  local idem_key = arg()
  local idem = arg() == 1
  local idem_ttl = arg()
  local res_ttl = arg()
  local currency = arg()
  local mode = arg()
  return now, decision_id, customer, plan, request_id, idem_key, idem, idem_ttl, res_ttl,
    currency, mode
end

-- Counters outlive the end of their window by grace_ms (read first in the body, see codec.py).
-- Expiries travel as absolute times so the ARGV of a counter does not depend on `now`.
local grace_ms = 0
local function read_grace() grace_ms = arg() end
local NO_EXPIRY_TTL_MS = 400 * 86400000
local function ttl_until(end_us, now)
  if end_us < 0 then return NO_EXPIRY_TTL_MS end
  local ms = (end_us - now) / 1000
  if ms < 0 then ms = 0 end
  return math.floor(ms) + grace_ms
end

-- The process's decision journal (decide.lua, void.lua): a hash per partition, process and
-- few seconds, deleted by its process once no reply of that time can still be lost; the
-- expiry only collects the journals of a process that died.
local JOURNAL_TTL_MS = 86400000
local function journal_put(journal, id, value)
  redis.call('HSET', journal, id, value)
  if redis.call('HLEN', journal) == 1 then redis.call('PEXPIRE', journal, JOURNAL_TTL_MS) end
end

local function hnum(key, field)
  local v = redis.call('HGET', key, field)
  if v then return tonumber(v) end
  return 0
end

-- Cost of qty (>= 0) more units when `already` units of the billing period are billed.
-- tiers: list of {up_to (-1 = unbounded), nano per unit}; each tier prices its own units.
local function tier_cost(tiers, already, qty)
  local low, high = already, already + qty
  local cost, lower = 0, 0
  for _, t in ipairs(tiers) do
    local upper = t[1]
    local top = high
    if upper >= 0 and upper < high then top = upper end
    local bottom = low
    if lower > bottom then bottom = lower end
    if top > bottom then cost = cost + (top - bottom) * t[2] end
    if upper < 0 or upper >= high then break end
    lower = upper
  end
  return cost
end

-- A count, then that many values, at A[i + 1]: returns them as a list and the index after.
local function read_list(i)
  local t = {}
  local n = A[i + 1]
  for j = 1, n do t[j] = A[i + 1 + j] end
  return t, i + 1 + n
end

local function key_at(index)
  if index > 0 then return KEYS[index] end
  return nil
end

-- One meter: feature, unit, qty, emit, reserve, grants, quota, rates, price (see codec.py).
-- Fields are read by position from A (one table lookup each: no call per field).
local function read_meter()
  local i = ai
  local m = {feature = A[i + 1], unit = A[i + 2], qty = A[i + 3], emit = A[i + 4] == 1,
             reserve = A[i + 5] == 1, grants = {}, rates = {}, tiers = {}}
  local ng = A[i + 6]
  i = i + 6
  for j = 1, ng do
    m.grants[j] = {key = key_at(A[i + 1]), amount = A[i + 2], exp_us = A[i + 3], id = A[i + 4]}
    i = i + 4
  end
  local q = {key = key_at(A[i + 1]), limit = A[i + 2], ceiling = A[i + 3], exp_us = A[i + 4],
             start_us = A[i + 5], end_us = A[i + 6]}
  q.thr, i = read_list(i + 6)
  m.q = q
  local nr = A[i + 1]
  i = i + 1
  for j = 1, nr do
    m.rates[j] = {key = key_at(A[i + 1]), ekey = key_at(A[i + 2]), limit = A[i + 3],
                  period = A[i + 4], unit = A[i + 5]}
    i = i + 5
  end
  m.b = {key = key_at(A[i + 1]), exp_us = A[i + 2]}
  local ntiers = A[i + 3]
  i = i + 3
  for j = 1, ntiers do
    m.tiers[j] = {A[i + 1], A[i + 2]}
    i = i + 2
  end
  ai = i
  return m
end

local function read_spend()
  local i = ai
  local s = {key = key_at(A[i + 1]), cap = A[i + 2], block = A[i + 3] == 1, exp_us = A[i + 4],
             start_us = A[i + 5], end_us = A[i + 6]}
  s.thr, ai = read_list(i + 6)
  return s
end

-- Read the counters a consumption of m.qty units touches; decide nothing, write nothing.
local function evaluate(m, now)
  local rest = m.qty
  m.takes = {}
  for j, g in ipairs(m.grants) do
    local take = 0
    local avail = g.amount - hnum(g.key, 'u')
    if avail > 0 and rest > 0 then take = math.min(avail, rest) end
    m.takes[j] = take
    rest = rest - take
  end
  m.billable = rest
  m.granted = m.qty - rest
  local q = m.q
  if q.key then
    -- 'blk': the counter's block episode is open (decide.lua: blocked on its first denial,
    -- resumed on the next admission); read with the count, no extra call
    local v = redis.call('HMGET', q.key, 'u', 'blk')
    q.u0 = tonumber(v[1]) or 0
    q.blk = v[2]
    q.u1 = q.u0 + m.billable
    q.deny = q.ceiling >= 0 and q.u1 > q.ceiling
  end
  for _, r in ipairs(m.rates) do
    local tat = tonumber(redis.call('GET', r.key) or '0')
    if tat < now then tat = now end
    r.t = r.period / r.limit
    r.tat0 = tat
    r.tat1 = tat + m.qty * r.t
    r.deny = r.tat1 - now > r.period
    r.retry = r.tat1 - r.period - now
  end
  m.b0 = 0
  if m.b.key then m.b0 = hnum(m.b.key, 'u') end
  m.cost = 0
  if #m.tiers > 0 then m.cost = tier_cost(m.tiers, m.b0, m.billable) end
end

-- Alerts: each threshold of each counter fires once per window and limit: the counter keeps
-- the limit it fired against ('a<t>' = limit), so a limit or cap changed mid-window re-arms
-- it (a cap raised from 0.05 to 0.08 alerts again at 50 % and 100 % of 0.08). A value of 1
-- was written before limits were kept: taken as fired against the limit in force.
local function fired(key, field, limit)
  local seen = redis.call('HGET', key, field)
  local want = fmt(limit)
  if seen == want then return true end
  redis.call('HSET', key, field, want)
  return seen == '1'
end

-- `thr`: percentages of `limit` (ascending), then absolute points negated (engine/plan.py
-- alert_points: units, or nano-units of spend), each fired once per window: 'a<t>' holds the
-- limit a percentage fired against, 'b<n>' marks an absolute point (no limit to re-arm it).
-- emit(kind, percent, at): `at` the absolute point, nil for a percentage.
local function fire_thresholds(key, thr, limit, used, emit)
  for _, t in ipairs(thr) do
    if t < 0 then
      if used >= -t and not fired(key, 'b' .. fmt(-t), -t) then emit('threshold', 0, -t) end
    elseif limit > 0 and used * 100 >= t * limit then
      if not fired(key, 'a' .. t, limit) then emit('threshold', t) end
    end
  end
end

-- ARGV[2], only when tracing is on: the decision span's W3C traceparent. Every event appended
-- carries it as a last `traceparent` field, so the worker's spans can link to the decision.
-- Without it TRACE is empty and unpack(TRACE) adds nothing.
local TRACE = {}
if ARGV[2] then TRACE = {'traceparent', ARGV[2]} end

local function alert(stream, fields)
  if ARGV[2] then
    fields[#fields + 1] = 'traceparent'
    fields[#fields + 1] = ARGV[2]
  end
  redis.call('XADD', stream, '*', unpack(fields))
end

-- Write what evaluate() read for m: grants, quota, rates, billed units. Emits alerts through
-- `emit(kind, threshold, m)`. Returns true when m is past its (soft) limit.
local function apply(m, now, emit)
  for j, g in ipairs(m.grants) do
    local take = m.takes[j]
    if take > 0 then
      if redis.call('HINCRBY', g.key, 'u', take) == take then
        redis.call('PEXPIRE', g.key, ttl_until(g.exp_us, now))
      end
    end
  end
  local over = false
  local q = m.q
  if q.key then
    redis.call('HINCRBY', q.key, 'u', m.billable)
    if q.u0 == 0 then redis.call('PEXPIRE', q.key, ttl_until(q.exp_us, now)) end
    if m.billable > 0 and #q.thr > 0 then
      fire_thresholds(q.key, q.thr, q.limit, q.u1,
        function(kind, t, at) emit(kind, t, m, nil, nil, nil, at) end)
    end
    if m.billable > 0 and q.limit >= 0 then
      if q.u1 > q.limit then
        over = true
        if not fired(q.key, 'ov', q.limit) then emit('overage', 100, m) end
      end
    end
  end
  for _, r in ipairs(m.rates) do
    if m.qty > 0 then
      local ttl = math.ceil((r.tat1 - now) / 1000) + 1000
      redis.call('SET', r.key, string.format('%.17g', r.tat1), 'PX', ttl)
    end
  end
  if m.b.key and m.billable ~= 0 then
    redis.call('HINCRBY', m.b.key, 'u', m.billable)
    if m.b0 == 0 then redis.call('PEXPIRE', m.b.key, ttl_until(m.b.exp_us, now)) end
  end
  return over
end

local function apply_spend(s, total, emit, now)
  if not s.key or total == 0 then return end
  s.s1 = redis.call('HINCRBY', s.key, 'u', total)
  if s.s1 == total then redis.call('PEXPIRE', s.key, ttl_until(s.exp_us, now)) end
  if total > 0 and #s.thr > 0 then
    fire_thresholds(s.key, s.thr, s.cap, s.s1,
      function(kind, t, at) emit(kind, t, nil, nil, nil, nil, at) end)
  end
  if total > 0 and s.cap >= 0 then
    if s.s1 > s.cap and not fired(s.key, 'ov', s.cap) then
      emit('spend_cap', 100, nil)
    end
  end
end
