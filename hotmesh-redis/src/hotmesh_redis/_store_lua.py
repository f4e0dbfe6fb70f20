"""Lua scripts of the store. Each runs atomically on one slot (or, when it also XADDs to a
stream key, on one non-cluster server: Store rule 6). Arguments arrive as one JSON document
whose leaves are pre-encoded JSON strings, so cjson never re-encodes a user number."""

from __future__ import annotations

#: Field marking that a job exists even when it has no user fields.
SENTINEL = "\x00hm"

# KEYS: job, steps, stream keys... ARGV[1]: {"f": [[k, v]], "exp": ms|-1, "pub": [[b, h]]}
CREATE = """
local job, steps = KEYS[1], KEYS[2]
if redis.call('EXISTS', job) == 1 then return 0 end
local a = cjson.decode(ARGV[1])
redis.call('DEL', steps)
local args = {ARGV[2], '1'}
for _, p in ipairs(a.f) do args[#args + 1] = p[1]; args[#args + 1] = p[2] end
redis.call('HSET', job, unpack(args))
if a.exp >= 0 then redis.call('PEXPIRE', job, a.exp) end
for i, m in ipairs(a.pub) do redis.call('XADD', KEYS[2 + i], '*', 'b', m[1], 'h', m[2]) end
return 1
"""

# KEYS: job, steps, stream keys... [, ack stream, ack release zset]  ARGV[1]: {"step", "set",
# "inc", "del", "req", "read", "rec", "exp", "pub"[, "ack": [group, id]][, "note": [[channel,
# payload]]]}. Returns {status, recorded messages, read values[, acked 0/1 (Store rule 6b),
# notified 0/1 (rule 6c)]}; PUBLISH from a script reaches subscribers after the script ran.
TRANSITION = """
local job, steps = KEYS[1], KEYS[2]
local a = cjson.decode(ARGV[1])
local function readf()
  local out = {}
  for i, f in ipairs(a.read) do out[i] = redis.call('HGET', job, f) end
  return out
end
local function apply()
if redis.call('EXISTS', job) == 0 then return {'rejected', '', {}} end
local rec = redis.call('HGET', steps, a.step)
if rec then return {'duplicate', rec, readf()} end
for _, r in ipairs(a.req) do
  local cur = redis.call('HGET', job, r[1])
  if #r == 1 then
    if cur then return {'rejected', '', {}} end
  else
    if not cur then return {'rejected', '', {}} end
    if cur ~= r[2] then
      local x, y = tonumber(cur), tonumber(r[2])
      if x == nil or y == nil or x ~= y then return {'rejected', '', {}} end
    end
  end
end
for _, p in ipairs(a.inc) do
  local cur = redis.call('HGET', job, p[1])
  if cur and tonumber(cur) == nil then return {'notnumber', p[1], {}} end
end
if #a.set > 0 then
  local args = {}
  for _, p in ipairs(a.set) do args[#args + 1] = p[1]; args[#args + 1] = p[2] end
  redis.call('HSET', job, unpack(args))
end
for _, p in ipairs(a.inc) do redis.call('HINCRBYFLOAT', job, p[1], p[2]) end
if #a.del > 0 then redis.call('HDEL', job, unpack(a.del)) end
redis.call('HSET', steps, a.step, a.rec)
if a.exp >= 0 then
  redis.call('PEXPIRE', job, a.exp)
  redis.call('PEXPIRE', steps, a.exp)
else
  local ttl = redis.call('PTTL', job)
  if ttl > 0 then redis.call('PEXPIRE', steps, ttl) end
end
for i, m in ipairs(a.pub) do redis.call('XADD', KEYS[2 + i], '*', 'b', m[1], 'h', m[2]) end
return {'applied', '', readf()}
end
local res = apply()
if res[1] == 'applied' then
  res[4], res[5] = 0, 0
  if a.ack then
    local n = #KEYS
    redis.pcall('XACK', KEYS[n - 1], a.ack[1], a.ack[2])
    redis.call('ZREM', KEYS[n], a.ack[2])
    res[4] = 1
  end
  if a.note then
    for _, m in ipairs(a.note) do redis.call('PUBLISH', m[1], m[2]) end
    res[5] = 1
  end
end
return res
"""

# Timers: KEYS due zset, lease zset, body hash, token hash.
ADD_TIMER = """
if redis.call('HSETNX', KEYS[3], ARGV[1], ARGV[3]) == 0 then return 0 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
return 1
"""

_RECLAIM = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)) do
  redis.call('ZREM', KEYS[2], id)
  redis.call('HDEL', KEYS[4], id)
  local body = redis.call('HGET', KEYS[3], id)
  if body then redis.call('ZADD', KEYS[1], cjson.decode(body).d, id) end
end
"""

# ARGV: limit, lease ms, token base. Returns {id, body, token, ...}.
CLAIM_TIMERS = (
    _RECLAIM
    + """
local out = {}
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
for i, id in ipairs(ids) do
  local token = ARGV[3] .. ':' .. i
  redis.call('ZREM', KEYS[1], id)
  redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), id)
  redis.call('HSET', KEYS[4], id, token)
  out[#out + 1] = id
  out[#out + 1] = redis.call('HGET', KEYS[3], id)
  out[#out + 1] = token
end
return out
"""
)

COMPLETE_TIMER = """
if redis.call('HGET', KEYS[4], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
return 1
"""

CANCEL_TIMER = """
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1])
return redis.call('HDEL', KEYS[3], ARGV[1])
"""

# Returns the body of the earliest unclaimed timer (expired leases count as unclaimed).
NEXT_TIMER = (
    _RECLAIM
    + """
local first = redis.call('ZRANGE', KEYS[1], 0, 0)
if #first == 0 then return false end
return redis.call('HGET', KEYS[3], first[1])
"""
)

# Signals: KEYS buf list, data hash, seen set, waiters hash, waiter order list, consumed hash.
# ARGV: delivery id, data. Returns the waiter JSON documents in registration order.
DELIVER_SIGNAL = """
if redis.call('SADD', KEYS[3], ARGV[1]) == 1 then
  redis.call('RPUSH', KEYS[1], ARGV[1])
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
end
local order = redis.call('LRANGE', KEYS[5], 0, -1)
if #order == 0 then return {} end
local out = {}
for _, w in ipairs(redis.call('HMGET', KEYS[4], unpack(order))) do
  if w then out[#out + 1] = w end
end
return out
"""

# ARGV: waiter key, waiter JSON. Returns {delivery id, data} of the oldest buffered signal.
ADD_WAITER = """
if redis.call('HSETNX', KEYS[4], ARGV[1], ARGV[2]) == 1 then
  redis.call('RPUSH', KEYS[5], ARGV[1])
end
local first = redis.call('LINDEX', KEYS[1], 0)
if not first then return false end
return {first, redis.call('HGET', KEYS[2], first)}
"""

# ARGV: waiter key. Returns {delivery id, data} or false (Store rule 15).
CONSUME_SIGNAL = """
local done = redis.call('HGET', KEYS[6], ARGV[1])
if done then return cjson.decode(done) end
local did = redis.call('LPOP', KEYS[1])
if not did then return false end
local data = redis.call('HGET', KEYS[2], did)
redis.call('HDEL', KEYS[2], did)
redis.call('HSET', KEYS[6], ARGV[1], cjson.encode({did, data}))
redis.call('HDEL', KEYS[4], ARGV[1])
redis.call('LREM', KEYS[5], 0, ARGV[1])
return {did, data}
"""

REMOVE_WAITER = """
redis.call('LREM', KEYS[5], 0, ARGV[1])
return redis.call('HDEL', KEYS[4], ARGV[1])
"""
