-- The monitors' shared cursor in the history stream and judge state, moved only from where it was read.
-- KEYS: guard hash.  ARGV: cursor read from, new cursor, epoch, scored, breaches, healthy_since ('' = none).
local cursor = redis.call('HGET', KEYS[1], 'cursor') or '0-0'
if cursor ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'cursor', ARGV[2], 'epoch', ARGV[3], 'scored', ARGV[4], 'breaches', ARGV[5],
  'healthy_since', ARGV[6])
return 1
