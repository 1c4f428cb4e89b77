-- include: audit
-- The monitors' shared cursor in the history stream and judge state, moved only from where it was read,
-- together with the notices (audit entries) the judged samples caused: the monitor whose move wins records
-- them, a monitor that lost the race records nothing (the winner judged the same samples).
-- KEYS: audit, guard
-- ARGV: maxlen, read_from, cursor, epoch, scored, judge, actor, ...notices
-- maxlen: the audit stream's; read_from: the cursor the monitor read from; cursor: where it moves to; judge: the
-- judge state (json); notices: (action, reason, metrics json) per notice.
local cursor = redis.call('HGET', KEYS[2], 'cursor') or '0-0'
if cursor ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[2], 'cursor', ARGV[3], 'epoch', ARGV[4], 'scored', ARGV[5], 'judge', ARGV[6])
for i = 8, #ARGV, 3 do
  audit(ARGV[i], ARGV[7], ARGV[i + 1], '', '', ARGV[i + 2], ARGV[4])
end
return 1
