-- include: refuse
-- The active learner holds the open incident from earlier offsets than its range starts at (restored from a version
-- written before the incident opened: what its predecessor did after that version is lost, so the lineage learns
-- nothing from there on): the range starts there. Fenced by the lease; only while that incident is open.
-- KEYS: lease, incident, incident_ranges
-- ARGV: lease_value, incident_id, held_from
-- held_from: msgpack offsets per topic and partition (the caller's per-partition minimum of the recorded start and
-- its own).
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return refuse('FENCED', 'lease is held by ' .. tostring(redis.call('GET', KEYS[1]) or 'nobody'))
end
if redis.call('HGET', KEYS[2], 'id') ~= ARGV[2] then return refuse('NOT_OPEN', 'incident ' .. ARGV[2] .. ' is not open') end
redis.call('HSET', KEYS[3], ARGV[2] .. ':from', ARGV[3])
return 1
