-- This store's identity: a token made at its first export or backup, recorded in every manifest, so a location
-- holding another store's backups is refused and an archive's marks apply to the versions of the store that wrote
-- them. Kept once set (a restore from backup sets it to its backups' own first: the same store, going on).
-- KEYS: store_id
-- ARGV: token
-- token: the identity to keep when the store has none yet. Returns the store's identity.
local held = redis.call('GET', KEYS[1])
if held then return held end
redis.call('SET', KEYS[1], ARGV[1])
return ARGV[1]
