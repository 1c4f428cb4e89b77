-- include: audit
-- include: refuse
-- Move the learner lineage to a rebuild's branch, atomically (`livelearn rebuild promote`): its head becomes the
-- lineage's head (a new epoch, no resume record: the active learner continues from the branch head's own offsets,
-- so the events after the branch's end are learned once, on the new lineage), stable and — unless pinned —
-- serving; the old lineage's versions newer than the branch's base leave the stable set and the candidates are
-- dropped (that lineage is abandoned); the lease is revoked, so the active learner's next write is fenced and it
-- activates again from the new head (the one recovery path). Refused when the lineage moved (a rollback) since the
-- operator looked, or the branch is not finished.
-- KEYS: audit, head, epoch, resume, stable, candidates, serving, pinned, lease, branches, protected, branch_versions,
--   index
-- ARGV: maxlen, name, branch_key, expected_epoch, actor, reason, channel, provenance, now, force
-- force: '1' to promote a branch although the lineage moved (a rollback, another promotion) since its rebuild
-- started: the versions that move discarded (or kept) may come back (or go).
local epoch = redis.call('GET', KEYS[3]) or '0'
if epoch ~= ARGV[4] then return refuse('STALE', 'the lineage epoch is ' .. epoch .. ', not ' .. ARGV[4]) end
local held = redis.call('HGET', KEYS[10], ARGV[2])
if not held then return refuse('MISSING', 'no branch named ' .. ARGV[2]) end
local doc = cjson.decode(held)
if doc.status ~= 'done' then
  return refuse('NOT_DONE', 'branch ' .. ARGV[2] .. ' is ' .. tostring(doc.status) .. ', not done')
end
if doc.lineage_epoch ~= nil and tostring(doc.lineage_epoch) ~= epoch and ARGV[10] ~= '1' then
  return refuse('STALE', 'the lineage moved since branch ' .. ARGV[2] .. ' was rebuilt (epoch ' ..
    tostring(doc.lineage_epoch) .. ', now ' .. epoch .. '): rebuild it, or --force')
end
local head = tostring(doc.head)
if redis.call('ZSCORE', KEYS[13], head) == false then
  return refuse('MISSING', 'the head of branch ' .. ARGV[2] .. ', version ' .. head .. ', is no longer stored')
end
local old = redis.call('GET', KEYS[2])
local base = tonumber(doc.base or 0) or 0
for _, v in ipairs(redis.call('ZRANGEBYSCORE', KEYS[5], '(' .. base, '+inf')) do
  if redis.call('ZSCORE', ARGV[3], v) == false then redis.call('ZREM', KEYS[5], v) end
end
redis.call('DEL', KEYS[6])
redis.call('SET', KEYS[2], head)
local new_epoch = redis.call('INCR', KEYS[3])
redis.call('DEL', KEYS[4])
redis.call('ZADD', KEYS[5], head, head)
if redis.call('EXISTS', KEYS[8]) == 0 then redis.call('SET', KEYS[7], head) end
redis.call('DEL', KEYS[9])
for _, v in ipairs(redis.call('ZRANGE', ARGV[3], 0, -1)) do
  redis.call('SREM', KEYS[12], v)
  if v ~= redis.call('GET', KEYS[8]) then redis.call('SREM', KEYS[11], v) end
end
doc.status, doc.promoted_at, doc.promoted_by = 'promoted', tonumber(ARGV[9]), ARGV[5]
redis.call('HSET', KEYS[10], ARGV[2], cjson.encode(doc))
audit('promote_branch', ARGV[5], ARGV[6], old, head, '{}', new_epoch, 'branch', ARGV[2], 'provenance', ARGV[8])
redis.call('PUBLISH', ARGV[7], 'rollback')
return new_epoch
