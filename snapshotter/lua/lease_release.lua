-- Give the lease up if still ours.
-- KEYS: lease
-- ARGV: lease_value
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
