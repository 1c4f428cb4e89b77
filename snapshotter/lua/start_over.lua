-- include: audit
-- A learner starts a model over after Redis lost its data (allowed: --allow-empty-store), atomically: number the
-- new versions after `after` (above every number Kafka recorded of the lost store) and audit it.
-- KEYS: audit, counter
-- ARGV: maxlen, after, actor, reason, recorded, may_repeat
-- maxlen: the audit stream's; after: '' = none known; recorded: what Kafka recorded (text); may_repeat: '1' when
-- the new numbers may repeat those of the lost store, else '0'.
-- Returns the last number handed out: the next version is numbered after it.
if ARGV[2] ~= '' and tonumber(redis.call('GET', KEYS[2]) or '0') < tonumber(ARGV[2]) then
  redis.call('SET', KEYS[2], ARGV[2])
end
local after = redis.call('GET', KEYS[2]) or '0'
audit('store_lost', ARGV[3], ARGV[4], '', '', '{}', '', 'numbered_after', after, 'recorded', ARGV[5],
  'may_repeat', ARGV[6])
return tonumber(after)
