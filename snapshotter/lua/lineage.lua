-- Shared by rollback and open_incident: move the learner lineage to version `target` in a new epoch, abandon
-- the stable versions above it, move serving with it unless a version is pinned, record where the new
-- lineage resumes (`resume_offsets`: how far the abandoned one had consumed; `resume_counters`, msgpack or '':
-- its stream counters at exactly those offsets, when known) and when and where it happened.
-- `k` names the keys: epoch, head, serving, pinned, rollbacks, stable, resume, candidates.
-- Returns the new epoch, the head it left, and serving before and after.
local function move_lineage(k, target, now, position, resume_offsets, channel, resume_counters)
  local from = redis.call('GET', k.head)
  local new_epoch = redis.call('INCR', k.epoch)
  redis.call('SET', k.head, target)
  redis.call('DEL', k.resume)
  redis.call('HSET', k.resume, 'epoch', new_epoch, 'from', from or '', 'to', target, 'offsets', resume_offsets)
  if resume_counters ~= '' then redis.call('HSET', k.resume, 'counters', resume_counters) end
  -- every version numbered above the target was written by the lineage being abandoned: none of them may
  -- be picked as "stable" again (rollback targets, unpin, retention's newest stable ones)
  redis.call('ZREMRANGEBYSCORE', k.stable, '(' .. target, '+inf')
  -- nor may a version still awaiting the guard's confirmation become stable: the guard judged its lineage
  redis.call('DEL', k.candidates)
  local serving_from = redis.call('GET', k.serving) or ''
  local serving_to = serving_from
  if redis.call('EXISTS', k.pinned) == 0 then
    redis.call('SET', k.serving, target)
    serving_to = target
  end
  redis.call('ZADD', k.rollbacks, now, now .. ':' .. new_epoch .. ':' .. position)
  redis.call('PUBLISH', channel, 'rollback')
  return new_epoch, from, serving_from, serving_to
end
