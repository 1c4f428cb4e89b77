-- include: audit
-- include: refuse
-- The canary split of serving: set it (a share of the requests with a user key goes to one arm of the serving
-- version, by the key's hash bucket) or abort it (percent 0; arm, steps and step kept, marked aborted), audited
-- ('canary' / 'canary_abort') and announced on the control channel. An abort of an aborted canary changes nothing.
-- KEYS: audit, canary, serving
-- ARGV: maxlen, arm, percent, steps, step, actor, reason, now, metrics, channel, serving, held, expected, abort
-- maxlen: the audit stream's; arm, percent (0..100, checked by the caller), steps ('5,25,50,100') and step (how many
-- steps the percent reached): the split set; now: unix s, the canary's `at`; metrics: json; serving and held: the
-- serving version the caller read and the arms its metadata names ('base,fast'; versions never change, so the
-- check holds while serving stays there); expected: the canary's `at` as the caller read it ('' = any); abort: '1'.
local at = redis.call('HGET', KEYS[2], 'at')
if ARGV[13] ~= '' and at ~= ARGV[13] then
  return refuse('STALE', 'the canary changed since it was read (now set at ' .. tostring(at or 'none') ..
    '); read it again')
end
local serving = redis.call('GET', KEYS[3])
local was = redis.call('HGET', KEYS[2], 'percent') or ''
if ARGV[14] == '1' then
  local arm = redis.call('HGET', KEYS[2], 'arm')
  if not arm then return refuse('MISSING', 'no canary is set, so there is nothing to abort') end
  if redis.call('HGET', KEYS[2], 'aborted') == '1' then return 0 end
  redis.call('HSET', KEYS[2], 'percent', '0', 'aborted', '1', 'actor', ARGV[6], 'reason', ARGV[7], 'at', ARGV[8])
  audit('canary_abort', ARGV[6], ARGV[7], '', serving, ARGV[9], '', 'arm', arm, 'percent', '0', 'was', was)
  redis.call('PUBLISH', ARGV[10], 'canary')
  return 1
end
if not serving then return refuse('MISSING', 'no version is serving yet: a canary splits the serving version') end
if serving ~= ARGV[11] then
  return refuse('STALE', 'serving moved to version ' .. serving .. ' while its arms were read; try again')
end
local held = false
for name in string.gmatch(ARGV[12], '[^,]+') do
  if name == ARGV[2] then held = true end
end
if not held then
  return refuse('MISSING', 'the serving version ' .. serving .. ' holds no arm ' .. ARGV[2] .. ' (it holds ' ..
    string.gsub(ARGV[12], ',', ', ') .. ')')
end
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[2], 'arm', ARGV[2], 'percent', ARGV[3], 'steps', ARGV[4], 'step', ARGV[5], 'actor', ARGV[6],
  'reason', ARGV[7], 'at', ARGV[8])
audit('canary', ARGV[6], ARGV[7], '', serving, ARGV[9], '', 'arm', ARGV[2], 'percent', ARGV[3], 'steps', ARGV[4],
  'step', ARGV[5], 'was', was)
redis.call('PUBLISH', ARGV[10], 'canary')
return 1
