-- include: audit
-- The monitors' shared cursor in the history stream and judge state, moved only from where it was read,
-- together with the notices (audit entries) the judged samples caused: the monitor whose move wins records
-- them, a monitor that lost the race records nothing (the winner judged the same samples).
-- KEYS: audit, guard hash.  ARGV: audit maxlen, cursor read from, new cursor, epoch, scored, judge state
-- (json), actor, then (action, reason, metrics json) per notice.
local cursor = redis.call('HGET', KEYS[2], 'cursor') or '0-0'
if cursor ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[2], 'cursor', ARGV[3], 'epoch', ARGV[4], 'scored', ARGV[5], 'judge', ARGV[6])
for i = 8, #ARGV, 3 do
  audit(ARGV[i], ARGV[7], ARGV[i + 1], '', '', ARGV[i + 2], ARGV[4])
end
return 1
