-- include: audit
-- include: refuse
-- The open incident is over: record its end and, if it froze learning, resume learning. With a position, the
-- release is recorded too (the position where learning went on: a learner restored from before it holds until
-- there, as this one did).
-- The offsets there end the incident's range in incident_ranges; without them, the active learner records them
-- when it goes on learning (release.lua).
-- KEYS: audit, incident, frozen, resumed, released, incident_ranges, lease
-- ARGV: maxlen, incident_id, actor, reason, metrics, now, channel, position, offsets, lease_value
-- maxlen: the audit stream's; metrics: json; now: unix s; position: '' = unknown; offsets: msgpack per topic and
-- partition ('' = unknown); lease_value: the closing learner's lease ('' = unfenced): a learner that lost its lease
-- (stopped past it while another took over) closes nothing — the active one ends the incident at its own event.
if ARGV[10] ~= '' and redis.call('GET', KEYS[7]) ~= ARGV[10] then
  return refuse('FENCED',
    'lease is held by ' .. tostring(redis.call('GET', KEYS[7]) or 'nobody (it expired, or Redis lost it)'))
end
local id = redis.call('HGET', KEYS[2], 'id')
if id ~= ARGV[2] then return refuse('NOT_OPEN', 'incident ' .. ARGV[2] .. ' is not open') end
local since = redis.call('HGET', KEYS[2], 'position') or ''
redis.call('DEL', KEYS[2])
local resumed = '0'
if redis.call('HGET', KEYS[3], 'incident') == id then
  redis.call('DEL', KEYS[3])
  redis.call('SET', KEYS[4], ARGV[6])
  redis.call('PUBLISH', ARGV[7], 'resume')
  resumed = '1'
end
if ARGV[9] ~= '' then
  redis.call('HSET', KEYS[6], id .. ':to', ARGV[9])
else
  redis.call('HSET', KEYS[6], 'pending', id)
end
if ARGV[8] ~= '' then
  redis.call('DEL', KEYS[5])
  redis.call('HSET', KEYS[5], 'position', ARGV[8], 'cause', 'incident ' .. id, 'actor', ARGV[3], 'at', ARGV[6])
  if ARGV[9] ~= '' then redis.call('HSET', KEYS[5], 'offsets', ARGV[9]) end
end
audit('incident_end', ARGV[3], ARGV[4], '', '', ARGV[5], '', 'incident', id, 'resumed', resumed,
  'frozen_from_position', since)
return 1
