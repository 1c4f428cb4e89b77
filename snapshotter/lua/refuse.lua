-- Shared by every script that refuses a change: the one form of a refusal, an error reply '<CODE> <detail>' that
-- snapshotter.scripts decodes into a ScriptRefusal (the codes: streaming.errors.RefusalCode). A script refuses
-- before it changes anything.
local function refuse(code, detail)
  return redis.error_reply(code .. ' ' .. detail)
end
