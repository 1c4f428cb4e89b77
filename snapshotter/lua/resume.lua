-- include: audit
-- include: refuse
-- Restart learning after a freeze; an open data-quality incident is closed too (an operator's override,
-- audited as its end).
-- The incident's range ends where the active learner goes on learning: it records that (release.lua).
-- KEYS: audit, frozen, resumed, incident, incident_ranges
-- ARGV: maxlen, actor, reason, metrics, now, channel
-- maxlen: the audit stream's; metrics: json; now: unix s.
if redis.call('EXISTS', KEYS[2]) == 0 and redis.call('EXISTS', KEYS[4]) == 0 then
  return refuse('NOT_FROZEN', 'learning is not frozen')
end
local incident = redis.call('HGET', KEYS[4], 'id')
if incident then
  local since = redis.call('HGET', KEYS[4], 'position') or ''
  redis.call('DEL', KEYS[4])
  redis.call('HSET', KEYS[5], 'pending', incident)
  audit('incident_end', ARGV[2], 'closed by an operator: ' .. ARGV[3], '', '', ARGV[4], '', 'incident', incident,
    'resumed', '1', 'frozen_from_position', since)
end
redis.call('DEL', KEYS[2])
redis.call('SET', KEYS[3], ARGV[5])
audit('resume', ARGV[2], ARGV[3], '', '', ARGV[4])
redis.call('PUBLISH', ARGV[6], 'resume')
return 1
