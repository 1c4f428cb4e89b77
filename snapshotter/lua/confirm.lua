-- Shared by write_version and promote: the candidate versions written at or before stream position
-- `confirmed` become stable (a quarantined one never does), and the newest of them serving unless a version
-- is pinned; serving never moves to an older number this way. `k` names the keys: candidates, stable,
-- serving, pinned, quarantined, log (the version log).  Returns how many became stable.
local function confirm_candidates(k, confirmed, maxlen, actor, epoch, metrics, channel)
  local promoted = {}
  for _, v in ipairs(redis.call('ZRANGEBYSCORE', k.candidates, '-inf', confirmed)) do
    redis.call('ZREM', k.candidates, v)
    if not redis.call('HGET', k.quarantined, v) then
      redis.call('ZADD', k.stable, tonumber(v), v)
      promoted[#promoted + 1] = v
    end
  end
  if #promoted == 0 then return 0 end
  local newest = promoted[#promoted]
  local reason = 'confirmed: the data up to stream position ' .. confirmed .. ' was calm'
  redis.call('XADD', k.log, 'MAXLEN', '~', maxlen, '*', 'action', 'stable', 'actor', actor, 'reason', reason,
    'from', '', 'to', newest, 'metrics', metrics, 'epoch', epoch, 'versions', table.concat(promoted, ','))
  if redis.call('EXISTS', k.pinned) == 0 then
    local old = redis.call('GET', k.serving) or ''
    if old == '' or tonumber(newest) > tonumber(old) then
      redis.call('SET', k.serving, newest)
      redis.call('XADD', k.log, 'MAXLEN', '~', maxlen, '*', 'action', 'promote', 'actor', actor,
        'reason', 'newest stable version (' .. reason .. ')', 'from', old, 'to', newest, 'metrics', metrics,
        'epoch', epoch)
      redis.call('PUBLISH', channel, 'serving')
    end
  end
  return #promoted
end
