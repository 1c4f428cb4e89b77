-- The active learner's status and the metric samples recorded since, fenced by the lease.
-- KEYS: lease, status, history.  ARGV: lease value, status doc, ttl ms, history maxlen, fields per sample,
-- then the metric samples one after the other (each `fields per sample` values: field, value, field, ...).
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
local width = tonumber(ARGV[5])
local i = 6
while width > 0 and i + width - 1 <= #ARGV do
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[4], '*', unpack(ARGV, i, i + width - 1))
  i = i + width
end
return 1
