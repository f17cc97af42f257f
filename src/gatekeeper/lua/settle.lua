-- settle.lua: adjust a reservation to the actual quantities, atomically (common.lua prepended).
--
-- KEYS[1] usage stream   KEYS[2] alert stream   KEYS[3] reservation record (again at 4 to 6)
-- KEYS[7..] counters of the reservation's windows (same layout as decide.lua)
--
-- ARGV[1]: a MessagePack array (store/argpack.py): now_us, decision_id, customer, plan, request_id, currency, grace_ms, n_meters, meter...
--       (meter.qty = the ACTUAL quantity), spend
--
-- A missing record means never reserved (or settled so long ago that its answer expired with
-- it): nothing changes ({'X'}). Settling replaces the record by the answer given ('done', kept
-- as long as the record would have lived), so a retried settlement changes nothing and gets
-- that same answer back. A record past its expiry stands at its estimate ({'E'}).
-- Otherwise each reserved feature moves by delta = actual - estimate: a positive delta is
-- consumed like a decision that cannot be denied (the work is done); a negative delta gives
-- back billable units first, then grant units, and refunds their price at the current tier.
-- One 'adjustment' usage event per reserved feature. Returns {'S', total_cost_delta,
-- feature, delta, ...}.

local now = arg()
local decision_id = arg()
local customer = arg()
local plan = arg()
local request_id = arg()
local currency = arg()
local rk = KEYS[3]

local meters = {}
read_grace()
local n_meters = arg()
for j = 1, n_meters do meters[j] = read_meter() end
local spend = read_spend()

if redis.call('EXISTS', rk) == 0 then return {'X'} end
local done = redis.call('HGET', rk, 'done')
if done then return cjson.decode(done) end

-- the record becomes the answer: only its reservation time stays beside it, same expiry
local function answered(out)
  local ttl = redis.call('PTTL', rk)
  local t = redis.call('HGET', rk, 't')
  redis.call('DEL', rk)
  redis.call('HSET', rk, 't', t, 'done', cjson.encode(out))
  if ttl > 0 then redis.call('PEXPIRE', rk, ttl) end
  return out
end

local expires = tonumber(redis.call('HGET', rk, 'x'))
if now > expires then return answered({'E'}) end

local n_alerts = 0
-- emit as decide.lua's (apply() passes its arguments): `at` an absolute point, else nil
local function emit(kind, threshold, m, _, _, _, at)
  n_alerts = n_alerts + 1
  local feature, used, limit, start_us, end_us
  if m then
    feature, used, limit = m.feature, m.q.u1, m.q.limit
    start_us, end_us = m.q.start_us, m.q.end_us
  else
    feature, used, limit = '', spend.s1, spend.cap
    start_us, end_us = spend.start_us, spend.end_us
  end
  local fields = {
    'id', decision_id .. '.s' .. n_alerts, 'kind', kind, 'customer', customer, 'plan', plan,
    'feature', feature, 'threshold', fmt(threshold), 'used', fmt(used), 'limit', fmt(limit),
    'period_start_us', fmt(start_us), 'period_end_us', fmt(end_us), 'time_us', fmt(now),
    'decision_id', decision_id}
  if at then fields[#fields + 1] = 'at'; fields[#fields + 1] = fmt(at) end
  alert(KEYS[2], fields)
end

-- Give back r units of m: billable units first (quota, billed units, price), then grants.
local function refund(m, r)
  local billable_reserved = tonumber(redis.call('HGET', rk, m.feature .. ':b') or '0')
  local rb = math.min(r, billable_reserved)
  local rg = r - rb
  if m.q.key and rb > 0 then redis.call('HINCRBY', m.q.key, 'u', -rb) end
  m.cost = 0
  if m.b.key then
    -- graduated: the refunded units are the last ones billed this period
    local b_now = hnum(m.b.key, 'u')
    local from = b_now - rb
    if from < 0 then from = 0 end
    m.cost = -tier_cost(m.tiers, from, b_now - from)
    if rb > 0 then redis.call('HINCRBY', m.b.key, 'u', -rb) end
  elseif #m.tiers > 0 then
    m.cost = -tier_cost(m.tiers, 0, rb)
  end
  for j = #m.grants, 1, -1 do
    if rg <= 0 then break end
    local g = m.grants[j]
    local took = tonumber(redis.call('HGET', rk, m.feature .. ':g:' .. g.id) or '0')
    local back = math.min(took, rg)
    if back > 0 then
      redis.call('HINCRBY', g.key, 'u', -back)
      rg = rg - back
    end
  end
  for _, rate in ipairs(m.rates) do
    local tat = tonumber(redis.call('GET', rate.key) or '0')
    if tat > now then
      local back = tat - r * rate.period / rate.limit
      if back < now then back = now end
      redis.call('SET', rate.key, string.format('%.17g', back), 'PX', math.ceil((back - now) / 1000) + 1000)
    end
  end
  m.billable = -rb
  m.granted = -(r - rb)
end

local total = 0
local out = {'S', ''}
for j, m in ipairs(meters) do
  local est = tonumber(redis.call('HGET', rk, m.feature .. ':q') or '-1')
  if est >= 0 then
    local actual = m.qty
    local delta = actual - est
    if delta > 0 then
      m.qty = delta
      evaluate(m, now)
      apply(m, now, emit)
    elseif delta < 0 then
      refund(m, -delta)
    else
      m.cost, m.billable, m.granted = 0, 0, 0
    end
    total = total + m.cost
    redis.call('XADD', KEYS[1], '*',
      'id', decision_id .. '.' .. j .. '.settle', 'type', 'adjustment', 'customer', customer,
      'plan', plan, 'feature', m.feature, 'unit', m.unit, 'quantity', fmt(delta),
      'granted', fmt(m.granted), 'billable', fmt(m.billable), 'amount_nano', fmt(m.cost),
      'currency', currency, 'decision_id', decision_id, 'request_id', request_id,
      'estimate', fmt(est), 'actual', fmt(actual), 'time_us', fmt(now))
    out[#out + 1] = m.feature
    out[#out + 1] = fmt(delta)
  end
end
if spend.key and total ~= 0 then
  spend.s0 = hnum(spend.key, 'u')
  apply_spend(spend, total, emit, now)
end
out[2] = fmt(total)
return answered(out)
