-- include: audit
-- Hold serving on a version.
-- KEYS: audit, pinned, serving, protected.  ARGV: maxlen, version, actor, reason, meta key, channel.
if redis.call('EXISTS', ARGV[5]) == 0 then return redis.error_reply('MISSING version ' .. ARGV[2]) end
local old = redis.call('GET', KEYS[3])
local old_pin = redis.call('GET', KEYS[2])
if old_pin then redis.call('SREM', KEYS[4], old_pin) end
redis.call('SET', KEYS[2], ARGV[2])
redis.call('SET', KEYS[3], ARGV[2])
redis.call('SADD', KEYS[4], ARGV[2])
audit('pin', ARGV[3], ARGV[4], old, ARGV[2], '{}')
redis.call('PUBLISH', ARGV[6], 'serving')
return 1
