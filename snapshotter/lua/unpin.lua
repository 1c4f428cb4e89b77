-- include: audit
-- include: refuse
-- Let serving follow the newest stable version again (quarantined versions are not in the stable set).
-- KEYS: audit, pinned, serving, protected, stable, branch_versions
-- ARGV: maxlen, actor, reason, channel, metrics
-- maxlen: the audit stream's; metrics: json.
local pinned = redis.call('GET', KEYS[2])
if not pinned then return refuse('NOT_PINNED', 'no version is pinned') end
redis.call('DEL', KEYS[2])
if redis.call('SISMEMBER', KEYS[6], pinned) == 0 then redis.call('SREM', KEYS[4], pinned) end  -- a branch keeps it
local newest = redis.call('ZREVRANGE', KEYS[5], 0, 0)[1]
if newest then redis.call('SET', KEYS[3], newest) end
audit('unpin', ARGV[2], ARGV[3], pinned, newest or pinned, ARGV[5])
redis.call('PUBLISH', ARGV[4], 'serving')
return 1
