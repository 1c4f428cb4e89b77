-- include: refuse
-- Import one version from an archive (an export of another environment, or a backup of this one) keeping its
-- number, atomically: the same version already here is left as it is; a different one is never overwritten.
-- Never moves the head, serving or a pin: an imported version serves once an operator pins it (or a restore
-- makes it the head). The version counter is raised to the number, so this store never hands it out again.
-- KEYS: version_log, index, created, stable, protected, counter, quarantined
-- ARGV: version_log_maxlen, version_prefix, number, blob, meta, stable, quarantined, created_at, actor, source,
--   below_counter, protect
-- version_log_maxlen: the version log's length (approximate); stable: '1' to add it to the stable versions (a
-- rollback, unpin or retention may pick it); quarantined: the incident that quarantined it where it came from
-- ('' none: recorded in the version log only, an incident id of another store means nothing here); source: where
-- it came from; protect: '1' to keep it from retention (until pinned and unpinned, or released: `unprotect`);
-- below_counter: '1' to import a number this store handed out already and no longer holds (its own version, from
-- its own backup: the caller knows), else such a number is refused (it may have named another version here).
-- Returns 1 when imported, 0 when this very version (blob and metadata) was here already (made stable and kept
-- from retention all the same, when asked).
local n = ARGV[3]
local blob_key, meta_key = ARGV[2] .. n .. ':blob', ARGV[2] .. n .. ':meta'
local held = redis.call('GET', blob_key)
if held then
  if held ~= ARGV[4] then
    return refuse('CONFLICT', 'version ' .. n .. ' of this store is a different version (another checksum)')
  end
  if redis.call('GET', meta_key) ~= ARGV[5] then
    return refuse('CONFLICT', 'version ' .. n .. ' of this store has the same blob but other metadata (offsets, ' ..
      'lineage or time): a different version')
  end
  -- the same version: what this import asks of it holds all the same (an import run again, or one that died) —
  -- but a version quarantined here never becomes stable
  if ARGV[6] == '1' and redis.call('HEXISTS', KEYS[7], n) == 0 then redis.call('ZADD', KEYS[4], n, n) end
  if ARGV[12] == '1' then redis.call('SADD', KEYS[5], n) end
  return 0
end
if redis.call('EXISTS', meta_key) == 1 then
  return refuse('CONFLICT', 'version ' .. n .. ' of this store has metadata but no blob')
end
local counter = tonumber(redis.call('GET', KEYS[6]) or '0')
if counter >= tonumber(n) and ARGV[11] ~= '1' then
  return refuse('CONFLICT', 'this store numbered a version ' .. n .. ' already (its counter is ' .. counter ..
    ') and no longer holds it: the number may have named another version here')
end
-- (the one call that can fail on its argument first: a script that fails half way keeps what it wrote. The caller
-- checks the number and the time before: this order keeps a bad one from leaving half a version all the same)
redis.call('ZADD', KEYS[3], ARGV[8], n)
redis.call('SET', blob_key, ARGV[4])
redis.call('SET', meta_key, ARGV[5])
redis.call('ZADD', KEYS[2], n, n)
if ARGV[6] == '1' and redis.call('HEXISTS', KEYS[7], n) == 0 then redis.call('ZADD', KEYS[4], n, n) end
if ARGV[12] == '1' then redis.call('SADD', KEYS[5], n) end
if counter < tonumber(n) then redis.call('SET', KEYS[6], n) end
redis.call('XADD', KEYS[1], 'MAXLEN', '~', tonumber(ARGV[1]), '*', 'action', 'import', 'actor', ARGV[9],
  'reason', 'imported from ' .. ARGV[10], 'from', '', 'to', n, 'metrics', '{}', 'epoch', '', 'stable', ARGV[6],
  'quarantined', ARGV[7])
return 1
