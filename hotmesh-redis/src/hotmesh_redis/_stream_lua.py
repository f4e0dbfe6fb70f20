"""Lua scripts of the stream. Keys of one stream share the hash tag ``{ns:s:<stream>}``:
the stream, and per group a zset of pending ids (score: when each becomes deliverable again,
ms) and a dead-letter stream. The server clock (TIME) decides readiness, so every consumer
agrees.

The zset is the lease of each pending delivery (what ``visible_at`` is to the memory backend):
a delivery sets it to now + the reader's visibility timeout, ``release`` to now + its delay,
``extend`` to now + its visibility timeout; every ack removes it. A delivery's own timeout thus
decides its redelivery (Stream rule 4), whatever timeout later readers pass. Pending entries
without a score (handed out by the caller's XREADGROUP BLOCK, which cannot run in a script, or
by an older version) fall back to the idle-time scan: stale once idle for the reader's timeout."""

from __future__ import annotations

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

_DEADLETTER = """
local function fieldsof(id)
  local e = redis.call('XRANGE', s, id, id)
  if #e > 0 then return e[1][2] end
  return {}
end
local function deadletter(id, fields, n, err)
  local b, h = '{}', '{}'
  for i = 1, #fields, 2 do
    if fields[i] == 'b' then b = fields[i + 1] elseif fields[i] == 'h' then h = fields[i + 1] end
  end
  redis.call('XADD', dl, '*', 'id', id, 'b', b, 'h', h, 'n', n, 'e', err)
  redis.call('XACK', s, group, id)
  redis.call('ZREM', rel, id)
end
local function pending_count(id)
  local p = redis.call('XPENDING', s, group, id, id, 1)
  if #p == 0 then return nil end
  return p[1][4]
end
"""

# KEYS: stream, rel, dl. ARGV: group, consumer, count, visibility ms, max deliveries (-1: none),
# ensure group (1/0), scan for stale entries (1/0). Returns {{{id, fields, delivery count}...},
# ms until a lease ends (-1: none), ms until an entry without a lease goes stale (-1: none or no
# scan)}. Entries whose lease ended come first, then (on a scan) stale entries without a lease,
# then new ones; each delivery gets a lease. The caller asks for the group only on its first read
# and for the stale scan (XPENDING IDLE, the costly part) only now and then: both are server work
# on every read otherwise.
READ = (
    """
local s, rel, dl = KEYS[1], KEYS[2], KEYS[3]
local group, consumer = ARGV[1], ARGV[2]
local count, vis, maxd = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
"""
    + _NOW
    + _DEADLETTER
    + """
local ensure, scan = ARGV[6] == '1', ARGV[7] == '1'
if ensure then redis.pcall('XGROUP', 'CREATE', s, group, '0', 'MKSTREAM') end
local out = {}
-- Stream rules 4, 7, 9: a pending entry handed over again, or dead-lettered.
local function take(id)
  local n = pending_count(id)
  if n == nil then redis.call('ZREM', rel, id); return end
  if maxd >= 0 and n + 1 > maxd then
    deadletter(id, fieldsof(id), n, 'max deliveries exceeded')
    return
  end
  local c = redis.call('XCLAIM', s, group, consumer, 0, id)
  if #c > 0 and c[1] then
    redis.call('ZADD', rel, now + vis, id)
    out[#out + 1] = {c[1][1], c[1][2], n + 1}
  else
    redis.call('ZREM', rel, id)
    redis.call('XACK', s, group, id)
  end
end
for _, id in ipairs(redis.call('ZRANGEBYSCORE', rel, '-inf', now, 'LIMIT', 0, count)) do
  if #out >= count then break end
  take(id)
end
if #out < count and scan then
  local cursor, scanned = '-', 0
  while #out < count and scanned < 1000 do
    local p = redis.call('XPENDING', s, group, 'IDLE', vis, cursor, '+', 100)
    if #p == 0 then break end
    for _, e in ipairs(p) do
      scanned = scanned + 1
      if #out >= count then break end
      if not redis.call('ZSCORE', rel, e[1]) then take(e[1]) end
    end
    if #p < 100 then break end
    cursor = '(' .. p[#p][1]
  end
end
if #out < count then
  local r = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', count - #out,
                       'STREAMS', s, '>')
  if r then
    for _, e in ipairs(r[1][2]) do
      if maxd >= 0 and 1 > maxd then deadletter(e[1], e[2], 0, 'max deliveries exceeded')
      else
        redis.call('ZADD', rel, now + vis, e[1])
        out[#out + 1] = {e[1], e[2], 1}
      end
    end
  end
end
local wait, stale = -1, -1
local nxt = redis.call('ZRANGEBYSCORE', rel, '(' .. now, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
if #nxt > 0 then wait = tonumber(nxt[2]) - now end
if scan then
  for _, e in ipairs(redis.call('XPENDING', s, group, '-', '+', 20)) do
    if not redis.call('ZSCORE', rel, e[1]) then
      local left = vis - e[3]
      if left < 1 then left = 1 end
      if stale < 0 or left < stale then stale = left end
    end
  end
end
return {out, wait, stale}
"""
)

# KEYS: stream, rel. ARGV: group, ids...
ACK = """
local n = redis.pcall('XACK', KEYS[1], ARGV[1], unpack(ARGV, 2))
if type(n) ~= 'number' then return 0 end
redis.call('ZREM', KEYS[2], unpack(ARGV, 2))
return n
"""

# KEYS: stream, rel. ARGV: group, delay ms, ids... Returns how many were pending. The new
# lease replaces the delivery's (Stream rule 9).
RELEASE = (
    _NOW
    + """
local n = 0
for i = 3, #ARGV do
  local p = redis.pcall('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if type(p) == 'table' and p.err == nil and #p > 0 then
    redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), ARGV[i])
    n = n + 1
  end
end
return n
"""
)

# KEYS: stream, rel. ARGV: group, visibility ms, then (id, delivery count) pairs. Returns how many
# leases it renewed (Stream rule 11). The delivery count is the fence: an entry acked,
# dead-lettered (no longer pending) or handed out again since (a higher count) is left alone.
# XCLAIM JUSTID to the current owner resets the idle time without counting a delivery (the
# count XPENDING reports, which reads return, stays the same), so XPENDING keeps showing when the
# worker last spoke and long tasks do not crowd the idle-time scan; the lease decides.
EXTEND = (
    _NOW
    + """
local s, rel, group, vis = KEYS[1], KEYS[2], ARGV[1], tonumber(ARGV[2])
local n = 0
for i = 3, #ARGV - 1, 2 do
  local id = ARGV[i]
  local p = redis.pcall('XPENDING', s, group, id, id, 1)
  if type(p) == 'table' and p.err == nil and #p > 0 and p[1][4] == tonumber(ARGV[i + 1]) then
    if #redis.call('XCLAIM', s, group, p[1][2], 0, id, 'JUSTID') > 0 then
      redis.call('ZADD', rel, now + vis, id)
      n = n + 1
    end
  end
end
return n
"""
)

# KEYS: stream, rel, dl. ARGV: group, id, error. Returns 1 if it was pending.
DEAD_LETTER = (
    """
local s, rel, dl = KEYS[1], KEYS[2], KEYS[3]
local group = ARGV[1]
"""
    + _DEADLETTER
    + """
local ok, n = pcall(pending_count, ARGV[2])
if not ok or n == nil then return 0 end
deadletter(ARGV[2], fieldsof(ARGV[2]), n, ARGV[3])
return 1
"""
)

_GROUPS = """
local function groups(s)
  local out = {}
  for _, g in ipairs(redis.call('XINFO', 'GROUPS', s)) do
    local info = {}
    for i = 1, #g, 2 do info[g[i]] = g[i + 1] end
    out[#out + 1] = info
  end
  return out
end
"""

# KEYS: stream. ARGV: group. Unacked = pending + not yet delivered (Stream rule 10).
BACKLOG = (
    _GROUPS
    + """
local s = KEYS[1]
if redis.call('EXISTS', s) == 0 then return 0 end
for _, g in ipairs(groups(s)) do
  if g['name'] == ARGV[1] then
    local undelivered = #redis.call('XRANGE', s, '(' .. g['last-delivered-id'], '+')
    return g['pending'] + undelivered
  end
end
return redis.call('XLEN', s)
"""
)

# KEYS: stream. ARGV: max length. Removes only entries every group has acked (Stream rule 10).
TRIM = (
    _GROUPS
    + """
local s = KEYS[1]
if redis.call('EXISTS', s) == 0 then return 0 end
local excess = redis.call('XLEN', s) - tonumber(ARGV[1])
if excess <= 0 then return 0 end
local function parse(id)
  local dash = string.find(id, '-', 1, true)
  return tonumber(string.sub(id, 1, dash - 1)), tonumber(string.sub(id, dash + 1))
end
local function less(a, b)
  local am, as = parse(a)
  local bm, bs = parse(b)
  return am < bm or (am == bm and as < bs)
end
local safe = nil
for _, g in ipairs(groups(s)) do
  local p = redis.call('XPENDING', s, g['name'])
  if p[1] > 0 and (safe == nil or less(p[2], safe)) then safe = p[2] end
  local nxt = redis.call('XRANGE', s, '(' .. g['last-delivered-id'], '+', 'COUNT', 1)
  if #nxt > 0 and (safe == nil or less(nxt[1][1], safe)) then safe = nxt[1][1] end
end
local ids = redis.call('XRANGE', s, '-', '+', 'COUNT', excess + 1)
local cut = 0
for i = 1, excess do
  if safe ~= nil and not less(ids[i][1], safe) then break end
  cut = i
end
if cut == 0 then return 0 end
local minid
if ids[cut + 1] then minid = ids[cut + 1][1]
else
  local ms, seq = parse(ids[cut][1])
  minid = string.format('%d-%d', ms, seq + 1)
end
return redis.call('XTRIM', s, 'MINID', minid)
"""
)
