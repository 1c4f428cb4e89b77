-- include: refuse
-- Store one version of a rebuild's branch, atomically: the next number, blob and metadata, indexed, kept from
-- retention (protected until the branch is promoted or dropped), in the branch's set, its doc's head moved and
-- heartbeat renewed, a version-log entry. Never touches the head, serving, the stable versions or the lease: a
-- branch serves nothing until it is promoted.
-- KEYS: counter, index, created, protected, branches, version_log, branch_versions
-- ARGV: version_prefix, blob, meta, created_at, branch_key, name, doc, version_log_maxlen, actor, run
-- branch_key: the branch's ZSET (Keys.branch(name)); doc: the branch's JSON without its head (set here); run: the
-- token of the rebuild run that started the branch (another run's branch of the same name is never written).
local held = redis.call('HGET', KEYS[5], ARGV[6])
if held and cjson.decode(held).run ~= ARGV[10] then  -- dropped and started again by another run meanwhile
  return refuse('NOT_DONE', 'branch ' .. ARGV[6] .. ' is another rebuild run\'s now (it was dropped and started ' ..
    'again): this run\'s version is not written')
end
if not held or cjson.decode(held).status ~= 'running' then  -- dropped or ended meanwhile: nothing is written
  return refuse('NOT_DONE', 'branch ' .. ARGV[6] .. ' is not running (dropped or ended): its version is not written')
end
local n = redis.call('INCR', KEYS[1])
redis.call('SET', ARGV[1] .. n .. ':blob', ARGV[2])
redis.call('SET', ARGV[1] .. n .. ':meta', ARGV[3])
redis.call('ZADD', KEYS[2], n, n)
redis.call('ZADD', KEYS[3], ARGV[4], n)
redis.call('SADD', KEYS[4], n)
redis.call('SADD', KEYS[7], n)
redis.call('ZADD', ARGV[5], n, n)
local doc = cjson.decode(ARGV[7])
doc.head = n
doc.versions = redis.call('ZCARD', ARGV[5])
redis.call('HSET', KEYS[5], ARGV[6], cjson.encode(doc))
redis.call('XADD', KEYS[6], 'MAXLEN', '~', tonumber(ARGV[8]), '*', 'action', 'branch', 'actor', ARGV[9],
  'reason', 'rebuild branch ' .. ARGV[6], 'from', '', 'to', n, 'metrics', '{}', 'epoch', '')
return n
