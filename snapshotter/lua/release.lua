-- include: refuse
-- The active learner went on learning after an operator's resume (a freeze lifted, an incident closed): record
-- where, so that a learner restored from a version written while held replays up to there held, as it did.
-- Fenced by the lease (only the active learner knows its position).
-- An incident an operator closed ends its range in incident_ranges here.
-- KEYS: lease, released, incident_ranges
-- ARGV: lease_value, position, cause, actor, now, offsets
-- now: unix s; offsets: msgpack per topic and partition ('' = none: the pending incident's end stays unknown).
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return refuse('FENCED', 'lease is held by ' .. tostring(redis.call('GET', KEYS[1]) or 'nobody'))
end
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[2], 'position', ARGV[2], 'cause', ARGV[3], 'actor', ARGV[4], 'at', ARGV[5])
if ARGV[6] ~= '' then redis.call('HSET', KEYS[2], 'offsets', ARGV[6]) end
local pending = redis.call('HGET', KEYS[3], 'pending')
if pending and ARGV[6] ~= '' then
  redis.call('HSET', KEYS[3], pending .. ':to', ARGV[6])
  redis.call('HDEL', KEYS[3], 'pending')
end
return 1
