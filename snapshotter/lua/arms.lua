-- include: audit
-- include: refuse
-- Declare challengers at run time: add one, remove one, or give the declarations back to the settings (reset).
-- The first change starts from the declarations in use (seed); from then on the hash is what the learner uses.
-- KEYS: audit, arms
-- ARGV: maxlen, op, name, declaration, seed, actor, reason, channel
-- maxlen: the audit stream's; op: add | remove | reset; seed: json object name -> declaration (used once).
local managed = redis.call('EXISTS', KEYS[2]) == 1
if ARGV[2] == 'reset' then
  if not managed then return refuse('NOT_MANAGED', 'the challengers are the settings\' already') end
  redis.call('DEL', KEYS[2])
  audit('challengers_reset', ARGV[6], ARGV[7], '', '', '{}')
  redis.call('PUBLISH', ARGV[8], 'arms')
  return 1
end
local seed = {}
if not managed then seed = cjson.decode(ARGV[5]) end
local existing
if managed then existing = redis.call('HGET', KEYS[2], ARGV[3]) else existing = seed[ARGV[3]] end
if ARGV[2] == 'add' and existing then
  return refuse('ARM_EXISTS', 'challenger ' .. ARGV[3] .. ' is declared already (' .. existing .. ')')
end
if ARGV[2] == 'remove' and not existing then
  return refuse('UNKNOWN_ARM', 'no challenger ' .. ARGV[3] .. ' is declared')
end
if not managed then
  redis.call('HSET', KEYS[2], '~managed', '1')
  for name, declaration in pairs(seed) do redis.call('HSET', KEYS[2], name, declaration) end
end
if ARGV[2] == 'add' then
  redis.call('HSET', KEYS[2], ARGV[3], ARGV[4])
  audit('challenger_add', ARGV[6], ARGV[7], '', ARGV[3], '{}', '', 'declared', ARGV[4])
else
  redis.call('HDEL', KEYS[2], ARGV[3])
  audit('challenger_remove', ARGV[6], ARGV[7], ARGV[3], '', '{}', '', 'declared', existing)
end
redis.call('PUBLISH', ARGV[8], 'arms')
return 1
