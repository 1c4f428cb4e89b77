-- include: refuse
-- The active learner went on learning after an operator's resume (a freeze lifted, an incident closed): record
-- where, so that a learner restored from a version written while held replays up to there held, as it did.
-- Fenced by the lease (only the active learner knows its position).
-- KEYS: lease, released
-- ARGV: lease_value, position, cause, actor, now
-- now: unix s.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return refuse('FENCED', 'lease is held by ' .. tostring(redis.call('GET', KEYS[1]) or 'nobody'))
end
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[2], 'position', ARGV[2], 'cause', ARGV[3], 'actor', ARGV[4], 'at', ARGV[5])
return 1
