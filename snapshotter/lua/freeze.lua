-- include: audit
-- include: refuse
-- Stop learning (learners keep scoring), fenced by the judged epoch.
-- KEYS: audit, frozen, epoch
-- ARGV: maxlen, actor, reason, metrics, now, channel, expected_epoch
-- maxlen: the audit stream's; metrics: json; now: unix s; expected_epoch: '' = any.
if redis.call('EXISTS', KEYS[2]) == 1 then return refuse('ALREADY', 'learning is frozen') end
local epoch = redis.call('GET', KEYS[3]) or '0'
if ARGV[7] ~= '' and ARGV[7] ~= epoch then return refuse('STALE', 'epoch is ' .. epoch) end
redis.call('HSET', KEYS[2], 'since', ARGV[5], 'actor', ARGV[2], 'reason', ARGV[3])
audit('freeze', ARGV[2], ARGV[3], '', '', ARGV[4], epoch)
redis.call('PUBLISH', ARGV[6], 'freeze')
return 1
