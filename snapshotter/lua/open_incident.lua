-- include: audit
-- include: lineage
-- include: refuse
-- A confirmed data-quality incident (the active learner saw it, fenced by its lease), atomically: record it,
-- quarantine the versions written since the shift began (they leave the stable set for good), freeze learning
-- (scoring goes on), and roll the lineage back to the newest stable version written before the shift (when there
-- is one), fenced by the judged epoch.
-- KEYS: audit, epoch, head, serving, pinned, rollbacks, stable, resume, incident, incident_counter, quarantined,
--       frozen, candidates, lease, incident_ranges
-- ARGV: maxlen, expected_epoch, actor, reason, metrics, now, channel, signal, change_point, position, target,
--       target_meta, head, resume_offsets, lease_value, resume_counters, scope, held_from, ...quarantine
-- maxlen: the audit stream's; expected_epoch: '' = any; metrics: json; now: unix s; target: '' = none;
-- target_meta: the meta key of the target; head: the head the resume offsets were read at ('' = none);
-- resume_offsets: msgpack; lease_value: '' = unfenced; resume_counters: the stream counters at the resume offsets
-- (msgpack, '' = not known); scope: what the signal watched ('' = the stream; a label-odds incident:
-- '<group>:up|down'); held_from: where the lineage stops learning, per topic and partition (msgpack: the
-- target's offsets, else the resume offsets; '' = not known): the start of the incident's range in incident_ranges;
-- quarantine: the numbers of the versions to quarantine.
-- Returns the incident id.
if ARGV[15] ~= '' and redis.call('GET', KEYS[14]) ~= ARGV[15] then
  return refuse('FENCED',
    'lease is held by ' .. tostring(redis.call('GET', KEYS[14]) or 'nobody (it expired, or Redis lost it)'))
end
local epoch = redis.call('GET', KEYS[2]) or '0'
if ARGV[2] ~= '' and ARGV[2] ~= epoch then return refuse('STALE', 'epoch is ' .. epoch) end
local open = redis.call('HGET', KEYS[9], 'id')
if open then return refuse('INCIDENT_OPEN', 'incident ' .. open .. ' is open already') end
local target = ARGV[11]
if target ~= '' and redis.call('EXISTS', ARGV[12]) == 0 then return refuse('MISSING', 'version ' .. target) end
local head = redis.call('GET', KEYS[3])
if (head or '') ~= ARGV[13] then return refuse('HEAD_MOVED', 'head is ' .. tostring(head)) end
local id = redis.call('INCR', KEYS[10])
redis.call('HSET', KEYS[9], 'id', id, 'signal', ARGV[8], 'change_point', ARGV[9], 'position', ARGV[10],
  'since', ARGV[6], 'reason', ARGV[4], 'target', target, 'scope', ARGV[17])
local quarantined = {}
redis.call('HDEL', KEYS[15], 'pending')  -- an earlier close whose release no learner recorded: not known
if ARGV[18] ~= '' then redis.call('HSET', KEYS[15], id .. ':from', ARGV[18]) end
for i = 19, #ARGV do
  redis.call('ZREM', KEYS[7], ARGV[i])
  redis.call('ZREM', KEYS[13], ARGV[i])
  redis.call('HSET', KEYS[11], ARGV[i], id)
  quarantined[#quarantined + 1] = ARGV[i]
end
if redis.call('EXISTS', KEYS[12]) == 0 then
  redis.call('HSET', KEYS[12], 'since', ARGV[6], 'actor', ARGV[3], 'reason', 'incident ' .. id .. ': ' .. ARGV[4],
    'incident', id, 'position', ARGV[10])
  redis.call('PUBLISH', ARGV[7], 'freeze')
end
audit('incident_start', ARGV[3], ARGV[4], head, target, ARGV[5], epoch, 'incident', id, 'signal', ARGV[8],
  'change_point', ARGV[9], 'quarantined', table.concat(quarantined, ','), 'scope', ARGV[17])
if target ~= '' then
  local k = {epoch = KEYS[2], head = KEYS[3], serving = KEYS[4], pinned = KEYS[5], rollbacks = KEYS[6],
             stable = KEYS[7], resume = KEYS[8], candidates = KEYS[13]}
  local new_epoch, from, serving_from, serving_to = move_lineage(k, target, ARGV[6], ARGV[10], ARGV[14], ARGV[7],
    ARGV[16])
  audit('rollback', ARGV[3], 'incident ' .. id .. ': back to before the shift; ' .. ARGV[4], from, target, ARGV[5],
    new_epoch, 'serving_from', serving_from, 'serving_to', serving_to, 'incident', id)
end
return id
