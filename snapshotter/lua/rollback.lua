-- include: audit
-- include: lineage
-- include: refuse
-- Move the learner lineage to a version (and serving, unless pinned), fenced by the judged epoch.
-- KEYS: audit, epoch, head, serving, pinned, rollbacks, stable, resume, quarantined, candidates, branch_versions
-- ARGV: maxlen, expected_epoch, target, actor, reason, metrics, now, target_meta, channel, action, head,
--       resume_offsets, position, resume_counters
-- maxlen: the audit stream's; expected_epoch: '' = any; metrics: json; now: unix s; target_meta: the meta key of
-- the target; action: the audit action; head: the head the resume offsets were read at ('' = none);
-- resume_offsets: msgpack; position: the stream position of the decision; resume_counters: the stream counters
-- at the resume offsets (msgpack, '' = not known).
-- Returns the new epoch.
local epoch = redis.call('GET', KEYS[2]) or '0'
if ARGV[2] ~= '' and ARGV[2] ~= epoch then return refuse('STALE', 'epoch is ' .. epoch) end
if redis.call('EXISTS', ARGV[8]) == 0 then return refuse('MISSING', 'version ' .. ARGV[3]) end
local quarantined = redis.call('HGET', KEYS[9], ARGV[3])
if quarantined then
  return refuse('QUARANTINED', 'version ' .. ARGV[3] .. ' is quarantined by incident ' .. quarantined)
end
if redis.call('SISMEMBER', KEYS[11], ARGV[3]) == 1 then  -- a rollback keeps the offsets; a promotion takes the branch's
  return refuse('NOT_DONE', 'version ' .. ARGV[3] .. ' is a version of a rebuild branch not promoted: `livelearn ' ..
    'rebuild promote` moves the lineage to a branch (and learns the events after its end once); pin it to try it')
end
local head = redis.call('GET', KEYS[3])
if (head or '') ~= ARGV[11] then return refuse('HEAD_MOVED', 'head is ' .. tostring(head)) end
local k = {epoch = KEYS[2], head = KEYS[3], serving = KEYS[4], pinned = KEYS[5], rollbacks = KEYS[6],
           stable = KEYS[7], resume = KEYS[8], candidates = KEYS[10]}
local new_epoch, from, serving_from, serving_to = move_lineage(k, ARGV[3], ARGV[7], ARGV[13], ARGV[12], ARGV[9],
  ARGV[14])
audit(ARGV[10], ARGV[4], ARGV[5], from, ARGV[3], ARGV[6], new_epoch, 'serving_from', serving_from,
  'serving_to', serving_to)
return new_epoch
