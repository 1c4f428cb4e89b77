-- include: refuse
-- A rebuild reports on its branch: its heartbeat, or its end (status 'done' or 'failed'), keeping the head and the
-- version count the branch's writes set.
-- KEYS: branches
-- ARGV: name, doc, run
-- run: the token of the rebuild run that started the branch: another run's branch of the same name (the first was
-- dropped and its name taken again while it was stopped) is never reported on.
local held = redis.call('HGET', KEYS[1], ARGV[1])
if not held then return refuse('MISSING', 'no branch named ' .. ARGV[1]) end
local old, doc = cjson.decode(held), cjson.decode(ARGV[2])
if old.run ~= ARGV[3] then
  return refuse('NOT_DONE', 'branch ' .. ARGV[1] .. ' is another rebuild run\'s now (it was dropped and started ' ..
    'again): not changed')
end
doc.head, doc.versions = old.head, old.versions
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(doc))
return 1
