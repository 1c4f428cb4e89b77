-- include: audit
-- include: refuse
-- Drop a rebuild branch, atomically: its versions lose the protection from retention (they are removed as any old
-- version is, unless something else keeps them), its set and document are deleted, audited. Refused for a running
-- rebuild that reported within `stale_ms` (a dead one — killed mid-way — can be dropped), unless forced.
-- KEYS: audit, branches, protected, head, branch_versions
-- ARGV: maxlen, name, branch_key, now_ms, stale_ms, force, actor, reason
local held = redis.call('HGET', KEYS[2], ARGV[2])
if not held then return refuse('MISSING', 'no branch named ' .. ARGV[2]) end
local doc = cjson.decode(held)
if doc.status == 'running' and tonumber(ARGV[4]) - tonumber(doc.heartbeat_ms) < tonumber(ARGV[5])
    and ARGV[6] ~= '1' then
  return refuse('NOT_DONE', 'branch ' .. ARGV[2] .. ' is running (it reported within ' ..
    math.floor(tonumber(ARGV[5]) / 1000) .. ' s)')
end
local head = redis.call('GET', KEYS[4]) or ''  -- the lineage's head keeps whatever protection it has
for _, v in ipairs(redis.call('ZRANGE', ARGV[3], 0, -1)) do
  redis.call('SREM', KEYS[5], v)
  if v ~= head then redis.call('SREM', KEYS[3], v) end
end
redis.call('DEL', ARGV[3])
redis.call('HDEL', KEYS[2], ARGV[2])
audit('drop_branch', ARGV[7], ARGV[8], tostring(doc.head), '', '{}', '', 'branch', ARGV[2], 'status', doc.status)
return 1
