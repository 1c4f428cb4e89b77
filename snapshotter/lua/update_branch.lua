-- include: refuse
-- A rebuild reports on its branch: its heartbeat, or its end (status 'done' or 'failed'), keeping the head and the
-- version count the branch's writes set.
-- KEYS: branches
-- ARGV: name, doc
local held = redis.call('HGET', KEYS[1], ARGV[1])
if not held then return refuse('MISSING', 'no branch named ' .. ARGV[1]) end
local old, doc = cjson.decode(held), cjson.decode(ARGV[2])
doc.head, doc.versions = old.head, old.versions
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(doc))
return 1
