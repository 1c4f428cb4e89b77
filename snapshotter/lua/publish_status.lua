-- The active learner's status and the metric samples recorded since, fenced by the lease.
-- KEYS: lease, status, history
-- ARGV: lease_value, status, ttl_ms, history_maxlen, samples
-- status: msgpack; samples: the metric samples as one msgpack array of arrays of strings (field, value, ...), ''
-- = none: one argument, not one per field (redis-py spends microseconds of Python per argument, on the learner's
-- thread).
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
if ARGV[5] ~= '' then
  for _, fields in ipairs(cmsgpack.unpack(ARGV[5])) do
    redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[4], '*', unpack(fields))
  end
end
return 1
