-- include: audit
-- Move the learner lineage to a version (and serving, unless pinned), fenced by the judged epoch; abandon the
-- stable versions above the target; record where the new lineage resumes.
-- KEYS: audit, epoch, head, serving, pinned, rollbacks, stable, resume.  ARGV: maxlen, expected epoch ('' = any),
-- target, actor, reason, metrics json, now (s), meta key of target, channel, action name, head the resume offsets
-- were read at ('' = none), resume offsets (msgpack).  Returns the new epoch.
local epoch = redis.call('GET', KEYS[2]) or '0'
if ARGV[2] ~= '' and ARGV[2] ~= epoch then return redis.error_reply('STALE epoch is ' .. epoch) end
if redis.call('EXISTS', ARGV[8]) == 0 then return redis.error_reply('MISSING version ' .. ARGV[3]) end
local from = redis.call('GET', KEYS[3])
if (from or '') ~= ARGV[11] then return redis.error_reply('HEAD_MOVED head is ' .. tostring(from)) end
local new_epoch = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[3], ARGV[3])
-- where the new lineage resumes: everything consumed so far is skipped, even if no learner lives to say so
redis.call('DEL', KEYS[8])
redis.call('HSET', KEYS[8], 'epoch', new_epoch, 'from', from or '', 'to', ARGV[3], 'offsets', ARGV[12])
-- every version numbered above the target was written by the lineage being abandoned: none of them may
-- be picked as "stable" again (rollback targets, unpin, retention's newest stable ones)
redis.call('ZREMRANGEBYSCORE', KEYS[7], '(' .. ARGV[3], '+inf')
local serving_from = redis.call('GET', KEYS[4]) or ''
local serving_to = serving_from
if redis.call('EXISTS', KEYS[5]) == 0 then
  redis.call('SET', KEYS[4], ARGV[3])
  serving_to = ARGV[3]
end
redis.call('ZADD', KEYS[6], ARGV[7], ARGV[7] .. ':' .. new_epoch)
redis.call('XADD', KEYS[1], 'MAXLEN', '~', tonumber(ARGV[1]), '*', 'action', ARGV[10], 'actor', ARGV[4],
  'reason', ARGV[5], 'from', from or '', 'to', ARGV[3], 'metrics', ARGV[6], 'epoch', new_epoch,
  'serving_from', serving_from, 'serving_to', serving_to)
redis.call('PUBLISH', ARGV[9], 'rollback')
return new_epoch
