-- include: audit
-- Let retention have versions an import kept from it (`livelearn versions release`), atomically and audited. A
-- pinned version, the head, serving and a rebuild branch's versions keep their protection.
-- KEYS: audit, protected, pinned, head, serving, branch_versions
-- ARGV: maxlen, actor, reason, ...numbers
local kept = {}
for _, key in ipairs({KEYS[3], KEYS[4], KEYS[5]}) do
  local v = redis.call('GET', key)
  if v then kept[v] = true end
end
local released = {}
for i = 4, #ARGV do
  local n = ARGV[i]
  if not kept[n] and redis.call('SISMEMBER', KEYS[6], n) == 0 and redis.call('SREM', KEYS[2], n) == 1 then
    released[#released + 1] = n
  end
end
audit('release_versions', ARGV[2], ARGV[3], '', '', '{}', '', 'versions', table.concat(released, ','))
return released
