-- This store's identity: a token made at its first export or backup, recorded in every manifest, so a location
-- holding another store's backups is refused and an archive's marks apply to the versions of the store that wrote
-- them. Kept once set (a restore from backup sets it to its backups' own first: the same store, going on).
-- KEYS: store_id
-- ARGV: token, adopt
-- token: the identity to keep when the store has none yet; adopt: '1' to take it even so (`livelearn backup
-- --adopt-identity`: the store lost its identity key alone, and the caller checked it holds the location's versions
-- byte for byte). Returns the store's identity.
local held = redis.call('GET', KEYS[1])
if held and ARGV[2] ~= '1' then return held end
redis.call('SET', KEYS[1], ARGV[1])
return ARGV[1]
