-- The active learner's status and the metric samples recorded since, fenced by the lease.
-- KEYS: lease, status, history.  ARGV: lease value, status doc, ttl ms, history maxlen, then the metric
-- samples one after the other, each as its number of values n followed by n values (field, value, ...).
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
local i = 5
while i <= #ARGV do
  local n = tonumber(ARGV[i])
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[4], '*', unpack(ARGV, i + 1, i + n))
  i = i + n + 1
end
return 1
