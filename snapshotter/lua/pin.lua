-- include: audit
-- include: refuse
-- Hold serving on a version; a quarantined one only when forced.
-- KEYS: audit, pinned, serving, protected, quarantined, branch_versions
-- ARGV: maxlen, version, actor, reason, version_meta, channel, force, metrics
-- maxlen: the audit stream's; version_meta: the meta key of the version; force: '1' or ''; metrics: json.
if redis.call('EXISTS', ARGV[5]) == 0 then return refuse('MISSING', 'version ' .. ARGV[2]) end
local quarantined = redis.call('HGET', KEYS[5], ARGV[2])
if quarantined and ARGV[7] ~= '1' then
  return refuse('QUARANTINED', 'version ' .. ARGV[2] .. ' is quarantined by incident ' .. quarantined)
end
local old = redis.call('GET', KEYS[3])
local old_pin = redis.call('GET', KEYS[2])
if old_pin and redis.call('SISMEMBER', KEYS[6], old_pin) == 0 then redis.call('SREM', KEYS[4], old_pin) end
redis.call('SET', KEYS[2], ARGV[2])
redis.call('SET', KEYS[3], ARGV[2])
redis.call('SADD', KEYS[4], ARGV[2])
audit('pin', ARGV[3], ARGV[4], old, ARGV[2], ARGV[8], '', 'forced', quarantined and ARGV[7] or '')
redis.call('PUBLISH', ARGV[6], 'serving')
return 1
