-- include: audit
-- A backup completed (`livelearn backup`): record when, where and what, for the monitor's backup age and the next
-- operator, atomically with an audit entry when it wrote versions (a run with nothing new writes no entry).
-- KEYS: audit, backup
-- ARGV: maxlen, at, location, manifest, written, newest, actor
-- at: unix seconds; written: how many versions it wrote; newest: the newest stable version the location holds.
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[2], 'at', ARGV[2], 'location', ARGV[3], 'manifest', ARGV[4], 'written', ARGV[5],
  'newest', ARGV[6], 'actor', ARGV[7])
if tonumber(ARGV[5]) > 0 then
  audit('backup', ARGV[7], 'backed up to ' .. ARGV[3], '', ARGV[6], '{}', '', 'manifest', ARGV[4], 'written', ARGV[5])
end
return 1
