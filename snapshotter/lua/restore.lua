-- include: audit
-- include: refuse
-- After Redis lost a model's data: make an imported version the head of a new lineage, atomically (the
-- disaster-recovery restore, `livelearn restore-from-backup`). Refused when the store has a head already (a
-- learner started over, or nothing was lost). Serving moves to it; new versions are numbered after `after` (above
-- every number ever exported and every number Kafka recorded), so no number is handed out twice.
-- KEYS: audit, head, serving, counter, epoch, join, store_id
-- ARGV: maxlen, version_meta, version, after, epoch, actor, reason, source, channel, join, join_sha256, store_id
-- version_meta: the meta key of the version; epoch: its lineage epoch (the lineage goes on from at least it); join:
-- the label join's state at that version, packed ('' none), stored as the version's (`write_version` does alike);
-- store_id: the identity of the store the backups came from ('' none recorded): the restored store is that store,
-- going on, and backs up to the same location.
-- Returns the number new versions are numbered after.
local head = redis.call('GET', KEYS[2])
if head then return refuse('NOT_EMPTY', 'the store has a lineage already (head ' .. head .. ')') end
if redis.call('EXISTS', ARGV[2]) == 0 then return refuse('MISSING', 'version ' .. ARGV[3]) end
redis.call('SET', KEYS[2], ARGV[3])
redis.call('SET', KEYS[3], ARGV[3])
if tonumber(redis.call('GET', KEYS[4]) or '0') < tonumber(ARGV[4]) then redis.call('SET', KEYS[4], ARGV[4]) end
if tonumber(redis.call('GET', KEYS[5]) or '0') < tonumber(ARGV[5]) then redis.call('SET', KEYS[5], ARGV[5]) end
if ARGV[12] ~= '' then redis.call('SET', KEYS[7], ARGV[12]) end
if ARGV[10] ~= '' then
  redis.call('DEL', KEYS[6])
  redis.call('HSET', KEYS[6], 'version', ARGV[3], 'sha256', ARGV[11], 'state', ARGV[10])
end
local after = redis.call('GET', KEYS[4])
audit('restore', ARGV[6], ARGV[7], '', ARGV[3], '{}', redis.call('GET', KEYS[5]), 'source', ARGV[8],
  'numbered_after', after)
redis.call('PUBLISH', ARGV[9], 'serving')
redis.call('PUBLISH', ARGV[9], 'restore')  -- head and epoch moved too: a learner reads its lineage again
return tonumber(after)
