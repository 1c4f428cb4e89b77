-- Shared by the control scripts: append one entry to the audit stream (KEYS[1]; ARGV[1] = maxlen); further
-- field, value pairs may follow the fixed ones.
local function audit(action, actor, reason, from, to, metrics, epoch, ...)
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', tonumber(ARGV[1]), '*', 'action', action, 'actor', actor,
    'reason', reason, 'from', from or '', 'to', to or '', 'metrics', metrics, 'epoch', epoch or '', ...)
end
