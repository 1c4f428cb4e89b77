-- Make the next version number greater than ARGV[1] (after Redis lost its data).  KEYS: counter.
if tonumber(redis.call('GET', KEYS[1]) or '0') < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[1])
end
