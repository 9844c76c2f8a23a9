"""The atomic DAG transitions, as Redis Lua scripts. Each state change and its event are atomic.

Node states: pending (deps not done) -> queued (published) -> running -> succeeded | failed;
pending -> skipped (a dependency failed); pending|queued -> cancelled.
meta.left counts nodes not yet terminal; the transition that brings it to 0 asks for the
response callback (and so does any replay while no response has been written).
"""

# KEYS: state, meta, attempts, lease, events
# ARGV: node, token, lease_ms, max_attempts, ts, event_json_extra, clean_retries
# Poison: more than max_attempts deliveries that did not end in a clean (transient) retry.
START = """
local st = redis.call('HGET', KEYS[1], ARGV[1])
if not st then return {'unknown', 0} end
if st == 'succeeded' or st == 'failed' or st == 'skipped' or st == 'cancelled' then return {st, 0} end
if st == 'pending' then return {'not-ready', 0} end
if redis.call('HGET', KEYS[2], 'cancel') == '1' then return {'cancel', 0} end
local holder = redis.call('GET', KEYS[4])
if holder and holder ~= ARGV[2] then return {'busy', redis.call('PTTL', KEYS[4])} end
local n = redis.call('HINCRBY', KEYS[3], ARGV[1], 1)
if n - tonumber(ARGV[7]) > tonumber(ARGV[4]) then return {'poison', n} end
redis.call('SET', KEYS[4], ARGV[2], 'PX', ARGV[3])
redis.call('HSET', KEYS[1], ARGV[1], 'running')
local ev = cjson.decode(ARGV[6])
ev['type'] = 'task'; ev['node'] = tonumber(ARGV[1]); ev['status'] = 'running'; ev['attempt'] = n; ev['ts'] = ARGV[5]
redis.call('XADD', KEYS[5], '*', 'data', cjson.encode(ev))
return {'run', n}
"""

# KEYS: lease   ARGV: token, lease_ms
RENEW = """
local cur = redis.call('GET', KEYS[1])
if cur == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
if not cur then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])  -- lapsed (a Redis outage): take it back
  return 1
end
return 0
"""

# KEYS: lease   ARGV: token
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# KEYS: state, meta, waiting, events, lease
# ARGV: node, outcome, successors_json, descendants_json, ts, event_json_extra
# While the plan streams (meta.streaming = 1) a node's successors are not all known yet: its outcome
# is recorded by COMPLETE_STREAMING, and this does nothing (a replayed delivery must not finalize
# a run whose plan is still partial).
COMPLETE = """
if redis.call('HGET', KEYS[2], 'streaming') == '1' then return {0, '[]'} end
local node = ARGV[1]
local outcome = ARGV[2]
local succ = cjson.decode(ARGV[3])
local desc = cjson.decode(ARGV[4])
local st = redis.call('HGET', KEYS[1], node)
local ready = {}
local left
local terminal = {succeeded=true, failed=true, skipped=true, cancelled=true}
if st and not terminal[st] then
  redis.call('HSET', KEYS[1], node, outcome)
  local ev = cjson.decode(ARGV[6])
  ev['type'] = 'task'; ev['node'] = tonumber(node); ev['status'] = outcome; ev['ts'] = ARGV[5]
  redis.call('XADD', KEYS[4], '*', 'data', cjson.encode(ev))
  local done = 1
  if outcome == 'succeeded' then
    for _, s in ipairs(succ) do
      local w = redis.call('HINCRBY', KEYS[3], s, -1)
      if w == 0 and redis.call('HGET', KEYS[1], s) == 'pending' then
        redis.call('HSET', KEYS[1], s, 'queued')
        table.insert(ready, s)
        redis.call('XADD', KEYS[4], '*', 'data',
          cjson.encode({type='task', node=tonumber(s), status='queued', ts=ARGV[5]}))
      end
    end
  else
    for _, d in ipairs(desc) do
      if redis.call('HGET', KEYS[1], d) == 'pending' then
        redis.call('HSET', KEYS[1], d, 'skipped')
        done = done + 1
        redis.call('XADD', KEYS[4], '*', 'data', cjson.encode({type='task', node=tonumber(d), status='skipped',
          ts=ARGV[5], error='dependency task ' .. node .. ' ' .. outcome}))
      end
    end
  end
  left = redis.call('HINCRBY', KEYS[2], 'left', -done)
  redis.call('DEL', KEYS[5])
else
  for _, s in ipairs(succ) do
    if redis.call('HGET', KEYS[1], s) == 'queued' then table.insert(ready, s) end
  end
  left = tonumber(redis.call('HGET', KEYS[2], 'left') or '0')
end
local finalize = 0
if left <= 0 and redis.call('HEXISTS', KEYS[2], 'response') == 0 then finalize = 1 end
return {finalize, cjson.encode(ready)}
"""

# KEYS: state, meta, events, lease, outputs, info
# ARGV: node, outcome, ts, event_json_extra, output_json ('' for none), info_json ('' for none)
# A node that started while its plan streams, finishing before the whole plan is written: its output,
# info and outcome are recorded at once and nothing is handed on (RunStore.finalize_streamed wires
# the final plan to it). 'final' when the whole plan is written by now (record it against that plan,
# with COMPLETE), 'ended' when the run ended first (a failed plan), 'held' when recorded here.
COMPLETE_STREAMING = """
if redis.call('HGET', KEYS[2], 'streaming') ~= '1' then return 'final' end
if redis.call('HEXISTS', KEYS[2], 'response') == 1 then return 'ended' end
local st = redis.call('HGET', KEYS[1], ARGV[1])
local terminal = {succeeded=true, failed=true, skipped=true, cancelled=true}
if st and not terminal[st] then
  if ARGV[5] ~= '' then redis.call('HSETNX', KEYS[5], ARGV[1], ARGV[5]) end
  if ARGV[6] ~= '' then redis.call('HSET', KEYS[6], ARGV[1], ARGV[6]) end
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  local ev = cjson.decode(ARGV[4])
  ev['type'] = 'task'; ev['node'] = tonumber(ARGV[1]); ev['status'] = ARGV[2]; ev['ts'] = ARGV[3]
  redis.call('XADD', KEYS[3], '*', 'data', cjson.encode(ev))
end
redis.call('DEL', KEYS[4])
return 'held'
"""

# KEYS: state, meta, events   ARGV: ts
# Marks the run cancelled; every pending or queued node becomes cancelled. Running ones finish.
CANCEL = """
if redis.call('EXISTS', KEYS[2]) == 0 then return {-1, '[]'} end
redis.call('HSET', KEYS[2], 'cancel', '1')
local flat = redis.call('HGETALL', KEYS[1])
local cancelled = {}
for i = 1, #flat, 2 do
  local st = flat[i + 1]
  if st == 'pending' or st == 'queued' then
    redis.call('HSET', KEYS[1], flat[i], 'cancelled')
    table.insert(cancelled, flat[i])
    redis.call('XADD', KEYS[3], '*', 'data',
      cjson.encode({type='task', node=tonumber(flat[i]), status='cancelled', ts=ARGV[1]}))
  end
end
local left = tonumber(redis.call('HGET', KEYS[2], 'left') or '0')
if #cancelled > 0 then left = redis.call('HINCRBY', KEYS[2], 'left', -#cancelled) end
local finalize = 0
if left <= 0 and redis.call('HEXISTS', KEYS[2], 'response') == 0 and redis.call('HEXISTS', KEYS[2], 'plan') == 1 then
  finalize = 1
end
return {finalize, cjson.encode(cancelled)}
"""
