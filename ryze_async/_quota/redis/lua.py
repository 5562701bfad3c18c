"""The Lua scripts of the Redis quota (`quota.RedisQuota`), and the design behind them.

Design (issue 9), and where it differs from the libraries studied:

- **Redis ``TIME`` is the only clock.** Each admission is one atomic Lua script (`lua`)
  that reads ``TIME`` itself. PyrateLimiter's Redis bucket and ``limits``' moving window stamp
  entries with the caller's ``time.time()``; hosts whose clocks disagree then over-admit
  (PyrateLimiter#53, #55: a list, not a sorted set, also lets async callers land out of
  order). A duration (the wait) is all that crosses to the caller, so its clock never matters.
- **A reservation, not a poll.** ``limits`` answers yes/no and its callers retry. Here the script
  computes the caller's slot, inserts the caller's unique member at it and returns t - now: the
  waiter sleeps once. A sorted set, pruned with ZREMRANGEBYSCORE on every call, holds at most
  ``limit`` past entries plus the waiters.
- **Lanes (issues 11, 18).** A bulk call's slot is the earliest t >= now after every reservation
  (first come, first served across processes) at which no window of ``period + margin`` holds
  more than ``limit`` entries and no window of ``period`` more than ``limit - reserve``
  (`bulk_slot`). An interactive call goes ahead of every process's bulk reservations not sent
  yet (slots after now): they are taken out, the call gets the earliest t >= now at which every
  window around t holds fewer than ``limit`` of the rest (a binary search per window over the
  sorted entries; at most ``4 * limit + 64`` read, past which the first-come slot, always a fit,
  is the answer), and they go back behind it in their order, each by the bulk rule and never
  earlier than it was. Their waiters learn the new slot when they wake (the recheck every waiter
  makes) and re-check their ``max_wait`` then; a moved waiter pays one more round trip, and its
  process one more wake-up, per interactive call that went ahead. A slot is its send time (the
  recheck and ``late``/``readmit``), so an entry after now was not sent and moving it never
  moves a request the server saw: the any-window bound holds through every move. Without a
  reserve an interactive call so waits until the oldest sent entry of the window ages out, a
  window at most. With one, every window of ``period`` leaves the reserve free, so a window of
  ``period + margin`` has it free again a margin later at most: an interactive call within the
  reserve waits a margin at most, and bulk alone takes the reserved slots of a window's oldest
  margin that nobody used (``limit - reserve`` per period, not per ``period + margin``). The
  reserve in force is the largest that a live client announced (`reserve`).
- **Margin**, as in `QuotaLimiter`: slots are ``period + margin`` apart (``period/60``, at least
  0.1 s), which absorbs the jitter between a request leaving and its arrival at the server. A
  waiter that wakes more than half of it after its slot (a stalled process), or a request
  about to leave that late (a slow ``before_send``, a stalled loop: issue 18), goes only where
  a slot fits now among the requests that left; the reservations queued behind it, admitted
  after it, move back where it crowds them (as on the local limiter, where waiters hold no
  slot yet). A request written more than a tenth of the margin after its slot (its
  connection slow to make) has its entry moved to then (`STAMP`, in the background), so the
  slot's next use waits a window after the request left; the margin covers only the way on.
- **Giving back.** A reservation abandoned before its send (cancelled while waiting, or
  `release`) is removed by member id. A slot whose request may have reached the server is never
  given back. A slot released in the middle of the queue is reused by the next interactive
  newcomer (or the next bulk one, which lands one slot earlier), not by those already queued.
- **Server feedback is shared**: a 429's hold and an unambiguous ``Remaining: 0`` set a "blocked
  until" key (in Redis time) and move every queued reservation after it, in its order (first
  come, first served survives a hold, and no slot after it goes unused); a ``Remaining`` below
  what the log allows sets a budget until the reset, which the freshest answer (of the request
  that left last) decides: answers come back in any order, and an older one, which counts our
  later calls as not yet sent, would otherwise hold the quota until the reset for nothing.
  Both read from when the answered request left (its slot, or its STAMP): the calls of a burst
  admitted together leave one after another, and those that left before it were counted. A
  lower ``X-RateLimit-Limit`` lowers the quota's limit for everyone (the strictest user wins).
  A waiter that slept towards a reserved slot asks once more on waking (one more round trip,
  queued waiters only) where its slot is now, and sleeps on if a hold moved it.
- **A fresh quota learns first**: when the log is empty the first admission goes alone until
  `settle` (or ``probe_wait``), so a stranger's spending, reported in its answer, caps the burst.
  Callers that meet the probe ask again after a short nap (the one poll, at start only).
- **Keys** are ``ryze:{<sha256 of server origin + token>}:...`` - never the token - all with one
  hash tag (one Cluster slot), each with a TTL so an idle quota leaves nothing behind.
- **Failing closed**: a Redis that is unreachable, slow (bounded socket timeouts) or failing
  raises `QuotaBackendError` before anything is sent; there is no silent fallback to an
  unshared limiter.
- **Lost state never means over quota (issue 19).** The keys can vanish or go back in time:
  FLUSHALL, an eviction, a restart without persistence or from an older snapshot, a failover
  to a replica that missed the last writes. An epoch key (a generation and the number of
  admissions in it) is checked by every admission and recheck against what the process saw
  last (remembered per process and token, `quota._Epochs`): gone while the process knew one,
  an older generation, or fewer admissions than it saw, and the log lost writes. The script
  then takes the last window as full: nobody is admitted until it has passed (the blocked key,
  queued reservations moved after it), and a new generation tells the other processes the loss
  is dealt with, so one loss costs one window of pause, said once in the detecting process's
  log. The epoch also keeps the member of each of its last 64 admissions: a process whose own
  latest admission's count another member holds sees the loss even after processes that never
  saw it took the count back up to where it was. What it cannot see: a loss that no process
  that saw the last writes comes back to (a process that starts after it, or idle longer
  than the keys' TTL, finds a fresh quota: the fresh quota's probe then learns from the
  server's answer). Nor two masters admitting at once: a Sentinel failover's old master, not
  yet demoted, still reached by connections opened before it, while others reach the new one,
  each log without the other's calls and their epochs in agreement. Redis's
  ``min-replicas-to-write`` makes the old master refuse then (its replica left it); a quota
  through Sentinel says once when it is missing (``topology.Link.unguarded``). What Redis
  must still give: a clock that is not stepped forward.


Every time in them is Redis ``TIME`` in integer microseconds (exact in a Lua double until the
year 2255); no script takes a clock reading from its caller. All keys of one quota share a
``{hash tag}``, so each script touches one Cluster slot.

KEYS (every script): 1 log (sorted set: member -> reserved send time), 2 blocked-until (string),
3 budget (hash: n, until), 4 conf (hash: the strictest limit and window of the quota's users;
exp: `keep_alive`),
5 probe (string: the member of a fresh quota's first admission, until it is settled),
6 reserves (sorted set: 'reserve:quota_id' -> when that announcement lapses), 7 epoch (hash:
gen, seq: admissions in this generation, paused: until when a loss's pause holds; exp; r0..r63:
the member of each of the last 64 admissions, by seq mod 64).
"""

from __future__ import annotations

__all__ = ["ADMIT", "ANNOUNCE", "FEEDBACK", "RECHECK", "STAMP"]

_PREAMBLE = """
if redis.replicate_commands then redis.replicate_commands() end
local log, blocked_k, budget_k, conf_k, probe_k = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local reserves_k, epoch_k = KEYS[6], KEYS[7]
-- How much of a window's oldest part may hold the reserve's unused slots for bulk (issue 18):
-- a script that places bulk sets it from its ARGV (the margin).
local slack = 0
local tm = redis.call('TIME')
local now = tonumber(tm[1]) * 1000000 + tonumber(tm[2])
-- Lua's own number-to-string (`..`) keeps 14 significant digits, 100 us here: times are
-- formatted by int() before they become text, so every one keeps its microsecond.
local function int(x) return string.format('%.0f', x) end
-- The reserve in force: the largest that a live client announced (members 'reserve:quota_id'
-- scored by when the announcement lapses), this caller's own (`own`, a string) included.
-- Its own is written again (issue 18: not on every admission) once a second of it has run
-- out, or when it is gone: it lapses `ttl_ms` after that, or a second sooner.
local function shared_reserve(own, id, ttl_ms)
  if own ~= '0' then
    local mine = own .. ':' .. id
    local lapses = tonumber(redis.call('ZSCORE', reserves_k, mine) or '0')
    if lapses - now <= (ttl_ms - 1000) * 1000 then
      redis.call('ZREMRANGEBYSCORE', reserves_k, '-inf', int(now))
      redis.call('ZADD', reserves_k, int(now + ttl_ms * 1000), mine)
      redis.call('PEXPIRE', reserves_k, ttl_ms)
    end
  end
  local reserve = tonumber(own)
  -- Lapsed ones are only skipped here (one call on every admission, not two): the next
  -- announcement prunes them, the key's TTL ends them.
  for _, m in ipairs(redis.call('ZRANGEBYSCORE', reserves_k, '(' .. int(now), '+inf')) do
    reserve = math.max(reserve, tonumber(string.match(m, '^(%d+):')) or 0)
  end
  return reserve
end
-- The first-come-first-served slot: after every reservation (so the only windows that gain
-- an entry are those ending at t), and once the cap-th latest entry is a window behind.
-- (`after_all`: t is after every entry already, and the last one is not read again.)
local function append_slot(t, n, cap, window, after_all)
  if n > 0 and not after_all then
    t = math.max(t, tonumber(redis.call('ZRANGE', log, -1, -1, 'WITHSCORES')[2]))
  end
  if n >= cap then
    t = math.max(t, tonumber(redis.call('ZRANGE', log, n - cap, n - cap, 'WITHSCORES')[2]) + window)
  end
  return t
end
-- A bulk slot: first come, first served after every reservation, at most `limit` entries in a
-- window and at most `limit - reserve` in its last `window - slack`. So any moment's window
-- has the reserve free again `slack` later, and bulk alone takes the reserved slots of a
-- window's oldest `slack` that nobody used (issue 18: limit - reserve per period).
local function bulk_slot(t, n, limit, reserve, window)
  t = append_slot(t, n, limit, window)
  if reserve > 0 then t = append_slot(t, n, limit - reserve, window - slack, true) end
  return t
end
-- The bulk reservations not sent yet (slots after now), in their order: {member, slot}.
local function unsent_bulk()
  local queued = redis.call('ZRANGEBYSCORE', log, '(' .. int(now), '+inf', 'WITHSCORES')
  local bulk = {}
  for i = 1, #queued, 2 do
    if string.sub(queued[i], 1, 1) == 'b' then
      bulk[#bulk + 1] = {queued[i], tonumber(queued[i + 1])}
    end
  end
  return bulk
end
-- Bulk reservations taken out (`unsent_bulk`) go back in their order, each by the bulk rule
-- and never earlier than it was; returns the last slot (0: none).
local function put_back(bulk, limit, reserve, window)
  local last = 0
  for _, b in ipairs(bulk) do
    last = bulk_slot(math.max(last, b[2]), redis.call('ZCARD', log), limit, reserve, window)
    redis.call('ZADD', log, int(last), b[1])
  end
  return last
end
-- The reservations still ahead move to `till` or later, in their order (first come, first
-- served survives a hold), each by its lane's rule and never earlier than it was (its waiter
-- sleeps until then); waiters learn their new slot when they wake.
local function requeue(till, limit, window, ttl)
  local queued = redis.call('ZRANGEBYSCORE', log, '(' .. int(now), '+inf', 'WITHSCORES')
  if #queued == 0 then return end
  for i = 1, #queued, 2 do redis.call('ZREM', log, queued[i]) end
  local reserve = math.min(shared_reserve('0', '', 0), limit - 1)
  local last = till
  for i = 1, #queued, 2 do
    local start, n = math.max(till, tonumber(queued[i + 1])), redis.call('ZCARD', log)
    if string.sub(queued[i], 1, 1) == 'b' then
      last = bulk_slot(start, n, limit, reserve, window)
    else
      last = append_slot(start, n, limit, window)
    end
    redis.call('ZADD', log, int(last), queued[i])
  end
  redis.call('PEXPIRE', log, math.floor((last - now + window) / 1000) + ttl)
end
-- A hash's TTL, refreshed to `keep` ms (never shortened) only when `slack` ms of it have run
-- out since (issue 18: no PTTL and PEXPIRE on every call), so it holds `keep - slack` or
-- more after each call. When it runs out is kept in the hash's field 'exp', which the caller
-- read with its other fields (`exp`).
local function keep_alive(key, exp, keep, slack)
  if exp and tonumber(exp) - now > (keep - slack) * 1000 then return end
  keep = math.max(redis.call('PTTL', key), keep)
  redis.call('PEXPIRE', key, keep)
  redis.call('HSET', key, 'exp', int(now + keep * 1000))
end
-- Lost state (issue 19): the epoch (gen, seq; seq counts admissions) against what the caller
-- last saw. Gone while the caller knew one, an older generation, fewer admissions than the
-- caller saw, or its own admission's place in the ring held by another: the log lost writes
-- (a flush, an eviction, a restart without persistence or from an older snapshot, a failover
-- to a replica behind), so the last window is taken as full and nobody is admitted until it
-- has passed; the next generation tells every other process that this loss is dealt with.
-- Gone and unknown to the caller: a fresh quota (or one idle past its keys' TTL). Returns
-- gen, seq, lost (1: this call found the loss), paused (1: a loss's pause is in force).
-- The ring: admission seq's member is kept under 'r<seq mod RING>' (ADMIT). `own_seq` and
-- `own` name the caller's own latest admission in the generation it knows (own_seq 0: none):
-- while fewer than RING admissions followed it, another member at its place means the count
-- was taken up again by others after a loss the count alone no longer shows (a process that
-- never saw the lost admissions admitted first).
local RING = 64
local function epoch_guard(known_gen, known_seq, limit, window, ttl, own_seq, own)
  local ep = redis.call('HMGET', epoch_k, 'gen', 'seq', 'paused', 'exp', 'r' .. (own_seq % RING))
  local gen, seq = tonumber(ep[1] or '0'), tonumber(ep[2] or '0')
  local taken = own_seq > 0 and seq - own_seq < RING and ep[5] and ep[5] ~= own
  local lost = (not ep[1] and known_gen > 0) or gen < known_gen
               or (gen == known_gen and (seq < known_seq or taken))
  if lost then
    gen, seq = math.max(gen, known_gen) + 1, 0
    local till = now + window
    local old = tonumber(redis.call('GET', blocked_k) or '0')
    if till > old then
      redis.call('SET', blocked_k, int(till), 'PX', math.floor(window / 1000) + ttl)
      requeue(till, limit, window, ttl)
    end
    redis.call('HSET', epoch_k, 'gen', int(gen), 'seq', '0', 'paused', int(till))
  elseif not ep[1] then
    gen = 1
    redis.call('HSET', epoch_k, 'gen', '1', 'seq', '0')
  end
  -- Half a window of slack: it still outlives by far what a process remembers (`ttl`).
  keep_alive(epoch_k, ep[4], math.floor(window / 1000) + ttl, math.floor(window / 2000))
  local paused = 0
  if ep[3] and tonumber(ep[3]) > now then paused = 1 end
  if lost then paused = 1 end
  local found = 0
  if lost then found = 1 end
  return gen, seq, found, paused
end
-- Two users of one token who disagree: the lower limit and the longer window win. When
-- they get stricter, reservations placed under the old ones would send too many in the
-- windows ahead: they move (a newcomer's limit, or the server's X-RateLimit-Limit).
local function strictest(limit, window, ttl)
  local conf = redis.call('HMGET', conf_k, 'limit', 'window', 'exp')
  if conf[1] then limit = math.min(limit, tonumber(conf[1])) end
  if conf[2] then window = math.max(window, tonumber(conf[2])) end
  if not conf[1] or limit ~= tonumber(conf[1]) or window ~= tonumber(conf[2]) then
    redis.call('HSET', conf_k, 'limit', int(limit), 'window', int(window))
    if conf[1] then requeue(now, limit, window, ttl) end
  end
  keep_alive(conf_k, conf[3], ttl, math.min(1000, math.floor(ttl / 2)))
  return limit, window
end
-- The uncontended case in O(log n), the answer `first_fit` would give: nothing is queued after
-- now and the window ending at t holds fewer than cap, so every window around t (which holds
-- t, and entries in (t - window, t] only) has room at t itself, and no entry needs to move.
-- Also returns whether the log is empty. Issue 18: what is queued is counted from the log's
-- end (O(1): no entry read and parsed), and a log of fewer than cap entries, the window's
-- count or more, has room without counting the window (a scan of it).
local function room_at(t, cap, window)
  if redis.call('ZCOUNT', log, '(' .. int(now), '+inf') > 0 then return false, false end
  local n = redis.call('ZCARD', log)
  if n < cap then return true, n == 0 end
  return redis.call('ZCOUNT', log, int(t - window + 1), '+inf') < cap, false
end
-- The earliest slot >= t0 where every window around it holds fewer than cap entries: it may
-- lie before queued reservations (between them, or now when bulk left the reserve free).
-- Entries are read from a window before t0, at most `scan` of them; a candidate whose windows
-- reach past what was read is not judged, and the append slot (always a fit) is the answer.
local function first_fit(t0, n, cap, window)
  local fallback = append_slot(t0, n, cap, window)
  local scan = 4 * cap + 64
  local raw = redis.call('ZRANGEBYSCORE', log, int(t0 - window + 1), '+inf', 'WITHSCORES',
                         'LIMIT', 0, scan)
  local e = {}
  for i = 2, #raw, 2 do e[#e + 1] = tonumber(raw[i]) end
  local m = #e
  local horizon = fallback
  if m == scan then horizon = math.min(horizon, e[m] - window) end
  local function from(x)  -- the first index whose entry is >= x (m + 1: none)
    local lo, hi = 1, m + 1
    while lo < hi do
      local mid = math.floor((lo + hi) / 2)
      if e[mid] >= x then hi = mid else lo = mid + 1 end
    end
    return lo
  end
  -- Every window holding t starts at t or at an entry in (t - window, t]: a window starting
  -- between entries holds a subset of the one starting at the next entry (or at t).
  local function fits(t)
    if from(t + window) - from(t) >= cap then return false end
    local k = from(t - window + 1)
    while k <= m and e[k] <= t do
      if from(e[k] + window) - k >= cap then return false end
      k = k + 1
    end
    return true
  end
  if t0 >= horizon then return fallback end
  if fits(t0) then return t0 end
  -- A slot frees only where a window starting at an entry ends: t0, or an entry + window.
  for j = from(t0 - window + 1), m do
    local c = e[j] + window
    if c >= horizon then break end
    if c > t0 and fits(c) then return c end
  end
  return fallback
end
"""

# One argument and a one-string answer, each of space-separated fields (issue 18: the client
# encodes one argument and parses one reply instead of 13 and 7, the larger part of an
# admission's cost); the fields, in order:
# ARGV[1]: limit, window_us (period + margin), reserve (this quota's interactive_reserve), member,
# max_wait_us (-1: no deadline), ttl_ms (idle keys expire after it), probe_ms (0: no probe),
# lane ('bulk' or 'interactive'), quota_id (names this quota's reserve), reserve_ttl_ms,
# slack_us (the margin: see `bulk_slot`), known_gen, known_seq (the epoch this process saw
# last; 0, 0: none), own_seq, own_member (this process's latest admission in that generation:
# its seq and member; 0, -: none; see `epoch_guard`'s ring).
# Returns 0, wait_us, slot_us, probed, ... (reserved; probed = 1: this is a fresh quota's
# probe), 1, retry_us, 0, 0, ... (a probe is out: nothing reserved, ask again) or
# 2, wait_us, 0, 0, ... (the slot is beyond max_wait: nothing reserved); each ends with the
# epoch's gen and seq (seq: this admission's) and lost (1: this call found the state lost).
ADMIT = _PREAMBLE + """
-- (One match, not a loop over the fields: issue 18.)
local limit, window, own, member, max_wait, ttl, probe_ms, lane, quota_id, reserve_ttl,
      slack_arg, known_gen, known_seq, own_seq, own_member = string.match(ARGV[1],
  '^(%S+) (%S+) (%S+) (%S+) (%S+) (%S+) (%S+) (%S+) (%S+) (%S+) (%S+) (%S+) (%S+) (%S+) (%S+)$')
local function answer(kind, wait, slot, probed, gen, seq, lost)
  return string.format('%d %.0f %.0f %d %.0f %.0f %d', kind, wait, slot, probed, gen, seq, lost)
end
slack, ttl, max_wait = tonumber(slack_arg), tonumber(ttl), tonumber(max_wait)
limit, window = strictest(tonumber(limit), tonumber(window), ttl)
probe_ms = tonumber(probe_ms)
local bulk = lane == 'bulk'
-- The reserve in force, read only where it counts (issue 18): bulk, and an interactive call
-- that moves bulk reservations; announced on every admission of a quota that has one.
local reserve = 0
if bulk or own ~= '0' then
  reserve = math.min(shared_reserve(own, quota_id, tonumber(reserve_ttl)), limit - 1)
end
redis.call('ZREMRANGEBYSCORE', log, '-inf', int(now - window))
local gen, seq, lost, paused = epoch_guard(tonumber(known_gen), tonumber(known_seq), limit,
                                          window, ttl, tonumber(own_seq), own_member)
local probe = redis.call('PTTL', probe_k)
if probe > 0 then return answer(1, probe * 1000, 0, 0, gen, seq, lost) end
local t = now
local blocked = tonumber(redis.call('GET', blocked_k) or '0')
if blocked > t then t = blocked end
-- A server budget (Remaining below what the log allows) until its reset: bulk leaves the
-- reserve of it too.
local budget = redis.call('HMGET', budget_k, 'n', 'until')
local floor = 0
if bulk then floor = reserve end
-- (A budget without n only remembers its answer's freshness: no limit.)
local limited = budget[1] and budget[2]
if limited and t < tonumber(budget[2]) and tonumber(budget[1]) <= floor then
  t = tonumber(budget[2])
end
-- An interactive call goes ahead of the bulk reservations not sent yet, which move back
-- behind it (issue 18); their waiters learn their new slot, and re-check their max_wait, when
-- they wake.
local moving, empty, fits = {}, false, false
if bulk then
  local n = redis.call('ZCARD', log)
  empty = n == 0
  t = bulk_slot(t, n, limit, reserve, window)
else
  fits, empty = room_at(t, limit, window)
  if not fits then
    if own == '0' then reserve = math.min(shared_reserve('0', '', 0), limit - 1) end
    moving = unsent_bulk()
    for _, b in ipairs(moving) do redis.call('ZREM', log, b[1]) end
    t = first_fit(t, redis.call('ZCARD', log), limit, window)
  end
end
local spend = limited and t < tonumber(budget[2])
if max_wait >= 0 and t - now > max_wait then
  for _, b in ipairs(moving) do redis.call('ZADD', log, int(b[2]), b[1]) end
  return answer(2, t - now, 0, 0, gen, seq, lost)
end
if spend then redis.call('HINCRBY', budget_k, 'n', -1) end
local probed = 0
-- (Not after a loss: the pause is the caution, and the others would poll through it.)
if probe_ms > 0 and empty and paused == 0 then
  redis.call('SET', probe_k, member, 'PX', math.floor((t - now) / 1000) + probe_ms)
  probed = 1
end
redis.call('ZADD', log, int(t), member)
local last = math.max(t, put_back(moving, limit, reserve, window))
-- The log outlives its last entry by a window and the idle TTL. Issue 18: a read, and the
-- write (PEXPIRE) only once its TTL has run a second short of that, never shortened.
local keep = math.floor((last - now + window) / 1000) + ttl
if redis.call('PTTL', log) < keep - 1000 then redis.call('PEXPIRE', log, keep) end
seq = redis.call('HINCRBY', epoch_k, 'seq', 1)
redis.call('HSET', epoch_k, 'r' .. (seq % RING), member)
return answer(0, t - now, t, probed, gen, seq, lost)
"""

# Keep this quota's reserve in force (a client with a reserve, from its start and then
# periodically) or withdraw it (reserve 0: the client closed). ARGV: reserve, quota_id,
# reserve_ttl_ms. Returns the reserve in force for the token (the largest announced).
ANNOUNCE = _PREAMBLE + """
if ARGV[1] == '0' then
  for _, m in ipairs(redis.call('ZRANGE', reserves_k, 0, -1)) do
    if string.sub(m, -string.len(ARGV[2]) - 1) == ':' .. ARGV[2] then
      redis.call('ZREM', reserves_k, m)
    end
  end
end
return shared_reserve(ARGV[1], ARGV[2], tonumber(ARGV[3]))
"""

# ARGV: hold_us (-1: none), remaining (-1: none), reset_us, admitted_at_us (-1: unknown),
# server_limit (-1: none), limit, window_us, ttl_ms, cap_us (longest believable reset), slack_us,
# member (the answered request's reservation; '': unknown).
FEEDBACK = _PREAMBLE + """
local hold, remaining, reset = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local admitted_at, server_limit = tonumber(ARGV[4]), tonumber(ARGV[5])
local ttl, cap_us = tonumber(ARGV[8]), tonumber(ARGV[9])
slack = tonumber(ARGV[10])
local limit, window = strictest(tonumber(ARGV[6]), tonumber(ARGV[7]), ttl)
if server_limit >= 1 and server_limit < limit then
  limit = strictest(server_limit, window, ttl)
end
redis.call('ZREMRANGEBYSCORE', log, '-inf', int(now - window))
-- Nobody is admitted before `till`.
local function block(till)
  local old = tonumber(redis.call('GET', blocked_k) or '0')
  if till <= old then return end
  redis.call('SET', blocked_k, int(till), 'PX', math.floor((till - now) / 1000) + ttl)
  requeue(till, limit, window, ttl)
end
if hold >= 0 then block(now + hold) end
if remaining < 0 then return 0 end
-- When the answered request left: its slot, or, when it left late, the time its entry moved
-- to (STAMP). Both rules below read from then (issue 18): the calls of a burst admitted
-- together leave one after another, and those that left before it reached the server before
-- it; read from its admission, they counted as maybe unseen, and the answers of a full
-- window, which agree with the log, held everyone until the server's reset.
local at = admitted_at
if at >= 0 and ARGV[11] ~= '' then
  local own = tonumber(redis.call('ZSCORE', log, ARGV[11]) or '-1')
  if own > at and own <= now then at = own end
end
-- Requests (of every process) that left after the answered one may not be in the server's
-- count; the answered one itself (its entry is at `at`) is.
local since = 0
if at >= 0 then since = redis.call('ZCOUNT', log, '(' .. int(at), int(now)) end
-- Answers come back in any order: the budget in force came from the freshest one (of the
-- request that left last), which saw everything an older one saw; an older answer changes
-- nothing.
if at < 0 then at = now end
local old = redis.call('HMGET', budget_k, 'until', 'at')
if old[1] and now < tonumber(old[1]) and old[2] and at < tonumber(old[2]) then return 0 end
local n = math.max(remaining, 0) - since
local free = limit - redis.call('ZCOUNT', log, '-inf', int(now))
local till = now + math.min(math.max(reset, 0), cap_us)
-- Our log at least as strict: it already waits for slots later than any server window. The
-- answer's freshness is kept (no n: no limit), so an older answer arriving later is ignored.
if n >= free then
  redis.call('HDEL', budget_k, 'n')
  redis.call('HSET', budget_k, 'until', int(till), 'at', int(at))
  redis.call('PEXPIRE', budget_k, math.floor((till - now) / 1000) + ttl)
  return 0
end
-- Spent for sure (nothing of ours came after the answered call): hold everyone. Otherwise
-- a budget, which a fresher answer replaces: `n <= 0` may only mean that our calls admitted
-- after the answered one reached the server before it (counted there, subtracted here).
if n <= 0 and since == 0 then redis.call('DEL', budget_k) block(till) return 1 end
redis.call('HSET', budget_k, 'n', int(n), 'until', int(till), 'at', int(at))
redis.call('PEXPIRE', budget_k, math.floor((till - now) / 1000) + ttl)
return 2
"""

# After a reserved waiter's sleep, and before a late request leaves (issue 18): {wait_us, slot_us,
# now_us} until its slot (0: go now; a hold begun meanwhile moved it), or {-1, 0, now_us}:
# reserve again (gone, or it slept past a hold's start: its slot had come when the hold moved
# the queue). now_us (Redis time) tells the caller how long ago its slot was. A waiter that
# wakes, or a request about to leave, more than `late_us` after its slot (a stalled process, a
# slow before_send) would send outside it, where the log no longer counts it: it goes now
# only if a slot now fits among the requests that left, its lane's way (the reservations it
# crowds move behind it), and reserves again otherwise.
# ARGV: member, limit, window_us, ttl_ms, late_us, slack_us, known_gen, known_seq, own_seq,
# own_member (as ADMIT's); each answer
# ends with the epoch's gen, seq and lost (as ADMIT's): a waiter that wakes after a loss finds
# its slot moved past the pause, or gone.
RECHECK = _PREAMBLE + """
slack = tonumber(ARGV[6])
local limit, window = strictest(tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]))
local gen, seq, lost = epoch_guard(tonumber(ARGV[7]), tonumber(ARGV[8]), limit, window,
                                   tonumber(ARGV[4]), tonumber(ARGV[9]), ARGV[10])
local score = redis.call('ZSCORE', log, ARGV[1])
if not score then return {-1, 0, now, gen, seq, lost} end
score = tonumber(score)
local blocked = tonumber(redis.call('GET', blocked_k) or '0')
if blocked > now and score < blocked then
  redis.call('ZREM', log, ARGV[1])
  return {-1, 0, now, gen, seq, lost}
end
if now - score <= tonumber(ARGV[5]) then
  return {math.max(0, score - now), score, now, gen, seq, lost}
end
redis.call('ZREM', log, ARGV[1])
redis.call('ZREMRANGEBYSCORE', log, '-inf', int(now - window))
-- A late call was admitted before the waiters queued behind it: it is judged against the
-- requests that left (entries up to now), as on the local limiter, and the reservations that
-- it now crowds move behind it (`requeue`). Judged against the reservations too, no late
-- call fitted once more than a window's worth were queued: each waited again at the queue's
-- end, was late again (a before_send slower than half the margin), and nobody was sent
-- (issue 18). With only entries up to now, the window holding now that starts at the
-- earliest of them holds the most.
local function room(cap, w) return redis.call('ZCOUNT', log, int(now - w + 1), int(now)) < cap end
if not room(limit, window) then return {-1, 0, now, gen, seq, lost} end
if string.sub(ARGV[1], 1, 1) == 'b' then  -- the bulk rule (`bulk_slot`) around now
  local reserve = math.min(shared_reserve('0', '', 0), limit - 1)
  if reserve > 0 and not room(limit - reserve, window - slack) then
    return {-1, 0, now, gen, seq, lost}
  end
end
redis.call('ZADD', log, int(now), ARGV[1])
redis.call('PEXPIRE', log, math.floor(window / 1000) + tonumber(ARGV[4]))
requeue(now, limit, window, tonumber(ARGV[4]))
return {0, now, now, gen, seq, lost}
"""

# A sent request's entry moves to the time its request left, seen from Redis: now, when this
# runs, right after the send (issue 18). Only later, and to now at most, so the entry still
# reads as sent (a slot after now is an unsent reservation that an interactive call may move):
# every window around a slot from now on counts it at least as before. Reservations placed
# while it stood earlier may now crowd a window with it: they move where they fit, in their
# order, never earlier (`requeue`); their waiters learn it when they wake.
# ARGV: member, limit, window_us, ttl_ms, slack_us, late_us (how long after its slot the request
# left, by the sending process's clock). Returns 1 (moved) or 0 (on time, or gone).
STAMP = _PREAMBLE + """
slack = tonumber(ARGV[5])
local ttl = tonumber(ARGV[4])
local limit, window = strictest(tonumber(ARGV[2]), tonumber(ARGV[3]), ttl)
local score = redis.call('ZSCORE', log, ARGV[1])
if not score or tonumber(score) >= now then return 0 end
-- When it left: its slot plus how late it left by its process's clock (a duration), never
-- after now. Not now itself: this runs after the send, later still on a busy loop, and a
-- stamp later than the send would push the reservations behind it for nothing.
local left = math.min(now, tonumber(score) + tonumber(ARGV[6]))
redis.call('ZADD', log, 'XX', int(left), ARGV[1])
requeue(left, limit, window, ttl)
return 1
"""
