-- include: audit
-- Restart learning after a freeze.
-- KEYS: audit, frozen, resumed.  ARGV: maxlen, actor, reason, metrics, now, channel.
if redis.call('EXISTS', KEYS[2]) == 0 then return redis.error_reply('NOT_FROZEN learning is not frozen') end
redis.call('DEL', KEYS[2])
redis.call('SET', KEYS[3], ARGV[5])
audit('resume', ARGV[2], ARGV[3], '', '', ARGV[4])
redis.call('PUBLISH', ARGV[6], 'resume')
return 1
