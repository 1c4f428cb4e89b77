-- include: confirm
-- include: refuse
-- The active learner confirms its candidate versions up to a stream position whose data was calm (promotion
-- 'guard'), fenced by its lease and lineage epoch; nothing while a data-quality incident is open.
-- KEYS: lease, epoch, candidates, stable, serving, pinned, quarantined, version_log, incident
-- ARGV: lease_value, epoch, confirmed, version_log_maxlen, actor, metrics, channel
-- epoch: the learner's lineage epoch; confirmed: the calm stream position; metrics: json.
-- Returns how many versions became stable.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return refuse('FENCED',
    'lease is held by ' .. tostring(redis.call('GET', KEYS[1]) or 'nobody (it expired, or Redis lost it)'))
end
local epoch = redis.call('GET', KEYS[2]) or '0'
if epoch ~= ARGV[2] then
  return refuse('STALE_LINEAGE', 'lineage epoch is ' .. epoch .. ', writer is on ' .. ARGV[2])
end
if redis.call('EXISTS', KEYS[9]) == 1 then return 0 end
local k = {candidates = KEYS[3], stable = KEYS[4], serving = KEYS[5], pinned = KEYS[6], quarantined = KEYS[7],
           log = KEYS[8]}
return confirm_candidates(k, ARGV[3], tonumber(ARGV[4]), ARGV[5], epoch, ARGV[6], ARGV[7])
