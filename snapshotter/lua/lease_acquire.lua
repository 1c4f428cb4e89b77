-- Take the writer lease if free, with a new fencing token.  Returns the lease value ('<token>:<holder>'), or nil.
-- KEYS: lease, fence
-- ARGV: holder, ttl_ms
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local value = redis.call('INCR', KEYS[2]) .. ':' .. ARGV[1]
redis.call('SET', KEYS[1], value, 'PX', ARGV[2])
return value
