-- include: audit
-- include: refuse
-- Point the `champion` alias at an arm (a challenger, or a former champion to back out): serving answers with that
-- arm of the version it serves at once, and the active learner makes it the champion at its next batch. A canary
-- in progress ends: the arm serves everyone now.
-- KEYS: audit, champion, canary
-- ARGV: maxlen, arm, actor, reason, channel, metrics, current
-- maxlen: the audit stream's; metrics: json; current: the arm the caller saw serving ('' = do not check): another one
-- is refused (an operator and the auto policy moving it at once: one wins).
local old = redis.call('GET', KEYS[2]) or 'base'
if ARGV[7] ~= '' and ARGV[7] ~= old then
  return refuse('CHAMPION_MOVED', 'the champion is ' .. old .. ' now, not ' .. ARGV[7])
end
if old == ARGV[2] then return refuse('IS_CHAMPION', ARGV[2] .. ' is the champion already') end
redis.call('SET', KEYS[2], ARGV[2])
local canary = redis.call('HGET', KEYS[3], 'arm')
if canary then redis.call('DEL', KEYS[3]) end
audit('promote_arm', ARGV[3], ARGV[4], old, ARGV[2], ARGV[6], '', 'canary_ended', canary or '')
redis.call('PUBLISH', ARGV[5], 'champion')
return 1
