-- void.lua: reverse one decision whose reply never reached its caller (common.lua prepended).
--
-- KEYS and ARGV[1]: exactly those of the decide.lua call being voided (the caller kept them),
-- so every counter is found where that call found it. No ARGV[2].
--
-- The decision journal (KEYS[5]) says what happened to it:
--   no entry: the call never ran (or ran and was denied: denials leave no receipt). A 'v' is
--     written, so the call cannot run later either (a write still on its way) -> {'N'}.
--   'v': voided already -> {'X'}.
--   a receipt: the call admitted. Everything it consumed is given back exactly: grant units,
--     quota and billed units, the rate windows' arrival times, the spend; its reservation
--     record and idempotency record are deleted; one 'adjustment' usage event per metered
--     feature (estimate = the quantity, actual 0, the negated units and amount, the decision's
--     own time: it lands in the same billing period) lets the billing store net it to zero.
--     Then 'v' -> {'V', total cost given back}.
-- Alerts the decision fired stay fired. A counter whose window has since expired is left
-- alone (never recreated negative).

local now, decision_id, customer, plan, request_id, idem_key, idem, _, _, currency =
  read_decision_head()
local journal = KEYS[5]

local receipt = redis.call('HGET', journal, decision_id)
if receipt == 'v' then return {'X'} end
if not receipt then
  journal_put(journal, decision_id, 'v')
  return {'N'}
end

local meters = {}
read_grace()
local n_meters = arg()
for j = 1, n_meters do meters[j] = read_meter() end
local spend = read_spend()

local function give_back(key, n)
  if key and n ~= 0 and redis.call('EXISTS', key) == 1 then
    redis.call('HINCRBY', key, 'u', -n)
  end
end

local r = cmsgpack.unpack(receipt)
local reserved, total = r[1], r[2]
local i = 2
for j, m in ipairs(meters) do
  i = i + 1
  local cost = r[i]
  local granted = 0
  for _, g in ipairs(m.grants) do
    i = i + 1
    granted = granted + r[i]
    give_back(g.key, r[i])
  end
  local billable = m.qty - granted
  give_back(m.q.key, billable)
  give_back(m.b.key, billable)
  if m.qty > 0 then
    for _, rate in ipairs(m.rates) do
      local tat = redis.call('GET', rate.key)
      local ttl = redis.call('PTTL', rate.key)
      if tat and ttl > 0 then
        local back = tonumber(tat) - m.qty * rate.period / rate.limit
        redis.call('SET', rate.key, string.format('%.17g', back), 'PX', ttl)
      end
    end
  end
  if m.emit then
    redis.call('XADD', KEYS[1], '*',
      'id', decision_id .. '.' .. j .. '.void', 'type', 'adjustment', 'customer', customer,
      'plan', plan, 'feature', m.feature, 'unit', m.unit, 'quantity', fmt(-m.qty),
      'granted', fmt(-granted), 'billable', fmt(-billable), 'amount_nano', fmt(-cost),
      'currency', currency, 'decision_id', decision_id, 'request_id', request_id,
      'idempotency_key', idem_key, 'estimate', fmt(m.qty), 'actual', '0', 'time_us', fmt(now),
      'reason', 'void')
  end
end
give_back(spend.key, total)
if reserved == 1 then redis.call('DEL', KEYS[4]) end
if idem then redis.call('DEL', KEYS[3]) end
redis.call('HSET', journal, decision_id, 'v')
return {'V', fmt(total)}
