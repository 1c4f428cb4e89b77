-- include: confirm
-- include: refuse
-- Write one numbered version, atomically: fenced by the lease and the lineage epoch; index it, move the
-- head, log it (in the version log: routine per-version entries, apart from the operators' audit stream); a
-- stable version joins the stable set and, unless a version is pinned, becomes serving;
-- then retention drops versions beyond the newest `keep` that are neither pinned, serving, protected,
-- among the newest `keep_stable` stable ones, a candidate, the open incident's target or quarantined by it,
-- nor a stable version kept by thinning: the newest stable version of each time bucket of each tier, e.g. one per
-- minute for the last hour (calendar buckets: what thinning kept stays kept until its horizon passes).
-- With promotion 'guard' a version that met the threshold is only a candidate (scored by its stream position)
-- until the learner has seen the data up to it calm: the candidates at or before the confirmed position
-- (this one included) become stable here, later ones when promote.lua confirms them.
-- While a data-quality incident is open no version may be stable: the script refuses (INCIDENT) and the
-- writer asks again as not stable.
-- With the label join, the join's state as this version leaves it replaces the one before (one copy, not one per
-- version: it is the stream's state, restored with the head).
-- KEYS: lease, counter, index, head, protected, epoch, stable, serving, pinned, version_log, incident, quarantined,
--       candidates, created, join, last_write
-- ARGV: lease_value, blob, meta, keep, version_prefix, epoch, stable, keep_stable, version_log_maxlen, writer,
--       metrics, parent, channel, promotion, position, confirmed, created_at, thinning, join, join_sha256, write_id
-- lease_value: '' = unfenced; version_prefix: the version keys' prefix; epoch: the writer's lineage epoch; stable:
-- '1' or '0'; metrics: json; parent: '' = none; promotion: 'guard' or 'immediate'; position: the stream position;
-- confirmed: the confirmed stream position ('' = none); created_at: unix s; thinning: the tiers (json
-- [[bucket, horizon], ...]); join: the packed join state ('' = no join); write_id: this write's (the client may send
-- it again when a timeout lost the reply: the version it wrote then is the answer, not a second one).
-- Returns the new number.
local last = redis.call('GET', KEYS[16])
if last and ARGV[21] ~= '' then
  local id, written = string.match(last, '^(%S+) (%d+)$')
  if id == ARGV[21] then return tonumber(written) end
end
if ARGV[1] ~= '' then
  local holder = redis.call('GET', KEYS[1])
  if holder ~= ARGV[1] then
    return refuse('FENCED', 'lease is held by ' .. tostring(holder or 'nobody (it expired, or Redis lost it)'))
  end
end
local epoch = redis.call('GET', KEYS[6]) or '0'
if epoch ~= ARGV[6] then
  return refuse('STALE_LINEAGE', 'lineage epoch is ' .. epoch .. ', writer is on ' .. ARGV[6])
end
if ARGV[7] == '1' and redis.call('EXISTS', KEYS[11]) == 1 then
  return refuse('INCIDENT', 'incident ' .. redis.call('HGET', KEYS[11], 'id') .. ' is open')
end
-- the writer's parent above the counter: the store went back (Redis restarted from a snapshot older than its last
-- writes, a replica promoted without them). The numbers up to the parent were handed out (and published with
-- predictions): never again. The new version names the parent the writer knows; the lost ones are gone.
local counter = tonumber(redis.call('GET', KEYS[2]) or '0')
local went_back = ARGV[12] ~= '' and tonumber(ARGV[12]) > counter
if went_back then redis.call('SET', KEYS[2], ARGV[12]) end
local n = redis.call('INCR', KEYS[2])
local prefix = ARGV[5]
redis.call('SET', prefix .. n .. ':blob', ARGV[2])
redis.call('SET', prefix .. n .. ':meta', ARGV[3])
if ARGV[19] ~= '' then
  redis.call('HSET', KEYS[15], 'version', n, 'sha256', ARGV[20], 'state', ARGV[19])
end
redis.call('ZADD', KEYS[3], n, n)
redis.call('ZADD', KEYS[14], tonumber(ARGV[17]), n)
redis.call('SET', KEYS[4], n)
local maxlen = tonumber(ARGV[9])
local candidate = ARGV[7] == '1' and ARGV[14] == 'guard'
redis.call('XADD', KEYS[10], 'MAXLEN', '~', maxlen, '*', 'action', 'snapshot', 'actor', ARGV[10],
  'reason', went_back and ('the store went back: its counter was ' .. counter .. ', below the parent; numbered ' ..
  'after the parent') or '', 'from', ARGV[12], 'to', n, 'metrics', ARGV[11], 'stable', candidate and '0' or ARGV[7],
  'candidate', candidate and '1' or '0', 'epoch', epoch)
if candidate then
  redis.call('ZADD', KEYS[13], tonumber(ARGV[15]), n)
end
if ARGV[16] ~= '' and redis.call('EXISTS', KEYS[11]) == 0 then
  local k = {candidates = KEYS[13], stable = KEYS[7], serving = KEYS[8], pinned = KEYS[9], quarantined = KEYS[12],
             log = KEYS[10]}
  confirm_candidates(k, ARGV[16], maxlen, ARGV[10], epoch, ARGV[11], ARGV[13])
end
if not candidate and ARGV[7] == '1' then
  redis.call('ZADD', KEYS[7], n, n)
  if redis.call('EXISTS', KEYS[9]) == 0 then
    local old = redis.call('GET', KEYS[8]) or ''
    redis.call('SET', KEYS[8], n)
    redis.call('XADD', KEYS[10], 'MAXLEN', '~', maxlen, '*', 'action', 'promote', 'actor', ARGV[10],
      'reason', 'newest stable version', 'from', old, 'to', n, 'metrics', ARGV[11], 'epoch', epoch)
    redis.call('PUBLISH', ARGV[13], 'serving')
  end
end
local keep = tonumber(ARGV[4])
local count = redis.call('ZCARD', KEYS[3])
if count > keep then
  local pinned = redis.call('GET', KEYS[9])
  local serving = redis.call('GET', KEYS[8])
  local keep_stable = tonumber(ARGV[8])
  local incident = redis.call('HGET', KEYS[11], 'id')
  local target = incident and redis.call('HGET', KEYS[11], 'target')
  local created = {}
  local pairs_ = redis.call('ZRANGE', KEYS[14], 0, -1, 'WITHSCORES')
  for i = 1, #pairs_, 2 do created[pairs_[i]] = tonumber(pairs_[i + 1]) end
  local waiting = {}
  for _, v in ipairs(redis.call('ZRANGE', KEYS[13], 0, -1)) do waiting[v] = true end
  -- thinning: for each tier {bucket, horizon} (seconds), the newest stable version of each bucket of creation
  -- time, among those younger than the horizon and at least one (first) bucket old (younger ones: the rules above)
  local thinned_in = {}
  local now = tonumber(ARGV[17])
  local tiers = cjson.decode(ARGV[18])
  local stable = redis.call('ZRANGE', KEYS[7], 0, -1)
  for _, tier in ipairs(tiers) do
    local newest = {}
    for _, v in ipairs(stable) do
      local at = created[v]
      if at and now - at < tier[2] and now - at >= tiers[1][1] then
        local bucket = math.floor(at / tier[1])
        if not newest[bucket] or tonumber(v) > tonumber(newest[bucket]) then newest[bucket] = v end
      end
    end
    for _, v in pairs(newest) do thinned_in[v] = true end
  end
  for _, v in ipairs(redis.call('ZRANGE', KEYS[3], 0, count - keep - 1)) do
    local rank = redis.call('ZREVRANK', KEYS[7], v)
    local kept = v == pinned or v == serving or (rank and rank < keep_stable) or thinned_in[v] or waiting[v]
      or (incident and (v == target or redis.call('HGET', KEYS[12], v) == incident))
      or redis.call('SISMEMBER', KEYS[5], v) == 1
    if not kept then
      redis.call('ZREM', KEYS[3], v)
      redis.call('ZREM', KEYS[7], v)
      redis.call('ZREM', KEYS[14], v)
      redis.call('HDEL', KEYS[12], v)
      redis.call('ZREM', KEYS[13], v)
      redis.call('DEL', prefix .. v .. ':blob', prefix .. v .. ':meta')
    end
  end
end
if ARGV[21] ~= '' then redis.call('SET', KEYS[16], ARGV[21] .. ' ' .. n) end
return n
