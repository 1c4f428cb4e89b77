-- include: refuse
-- A rebuild starts its branch, atomically: refused when a branch of that name exists, or when a running rebuild's
-- ranges overlap this one's (a rebuild that has not checked in for `stale_ms` is taken as dead).
-- KEYS: branches
-- ARGV: name, doc, now_ms, stale_ms
-- doc: the branch's JSON (its `ranges`: {topic: {partition: [from, to]}}); status 'running', heartbeat now.
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then
  return refuse('BRANCH_EXISTS', 'a branch named ' .. ARGV[1] .. ' exists already')
end
local mine = cjson.decode(ARGV[2])
local now, stale = tonumber(ARGV[3]), tonumber(ARGV[4])
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local other = cjson.decode(all[i + 1])
  if other.status == 'running' and now - tonumber(other.heartbeat_ms) < stale then
    for topic, parts in pairs(mine.ranges) do
      local theirs = other.ranges[topic]
      if theirs then
        for partition, span in pairs(parts) do
          local t = theirs[partition]
          if t and span[1] < t[2] and t[1] < span[2] then
            return refuse('CONFLICT', 'rebuild ' .. all[i] .. ' is running over ' .. topic .. '[' .. partition ..
              '] ' .. t[1] .. '-' .. t[2])
          end
        end
      end
    end
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
