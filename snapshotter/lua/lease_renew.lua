-- Extend the lease if still ours.
-- KEYS: lease
-- ARGV: lease_value, ttl_ms
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
