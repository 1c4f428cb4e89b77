-- include: audit
-- The monitors' shared cursor in the history stream and judge state, moved only from where it was read,
-- together with what the judged samples caused:
-- * the notices (audit entries): the monitor whose move wins records them, a monitor that lost the race
--   records nothing (the winner judged the same samples);
-- * promotion (promotion 'guard'): every candidate version written at or before the confirmed stream position
--   becomes stable, and the newest of them serving unless a version is pinned, when the lineage is still the
--   judged one and no incident is open.
-- KEYS: audit, guard hash, epoch, candidates, stable, serving, pinned, quarantined, incident.
-- ARGV: audit maxlen, cursor read from, new cursor, epoch, scored, judge state (json), actor, confirmed stream
--       position ('' = none), channel, then (action, reason, metrics json) per notice.
-- Returns 0 when another monitor moved the cursor, else 1 + the number of versions promoted.
local cursor = redis.call('HGET', KEYS[2], 'cursor') or '0-0'
if cursor ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[2], 'cursor', ARGV[3], 'epoch', ARGV[4], 'scored', ARGV[5], 'judge', ARGV[6])
for i = 10, #ARGV, 3 do
  audit(ARGV[i], ARGV[7], ARGV[i + 1], '', '', ARGV[i + 2], ARGV[4])
end
local promoted = {}
local epoch = redis.call('GET', KEYS[3]) or '0'
if ARGV[8] ~= '' and epoch == ARGV[4] and redis.call('EXISTS', KEYS[9]) == 0 then
  for _, v in ipairs(redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', ARGV[8])) do
    redis.call('ZREM', KEYS[4], v)
    if not redis.call('HGET', KEYS[8], v) then
      redis.call('ZADD', KEYS[5], tonumber(v), v)
      promoted[#promoted + 1] = v
    end
  end
end
if #promoted > 0 then
  local newest = promoted[#promoted]
  local reason = 'confirmed by the guard: the data up to stream position ' .. ARGV[8] .. ' judged calm'
  audit('stable', ARGV[7], reason, '', newest, '{}', epoch, 'versions', table.concat(promoted, ','))
  if redis.call('EXISTS', KEYS[7]) == 0 then
    local old = redis.call('GET', KEYS[6]) or ''
    if old == '' or tonumber(newest) > tonumber(old) then
      redis.call('SET', KEYS[6], newest)
      audit('promote', ARGV[7], 'newest stable version (' .. reason .. ')', old, newest, '{}', epoch)
      redis.call('PUBLISH', ARGV[9], 'serving')
    end
  end
end
return 1 + #promoted
