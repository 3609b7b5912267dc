-- exec: the general checks' playbook (file, filesystem, http, tcp). Runs the check's own remedy
-- command, `params.on_fail` (an argv, started without a shell), then waits until the check
-- passes again. A check without `on_fail` only alerts: its incident escalates at once, and the
-- check stays held until it is seen healthy again.
--   remediate run on_fail; a non-zero exit fails the attempt
--   verify    re-probe every 10 ms until the check passes, up to params.verify_ms (10 s)

local P = {
  name = "exec",
  mode = {"file", "filesystem", "http", "tcp"},
  description = "run the check's on_fail command and wait for the check to pass",
  retries = 2,
  disruptive = true,
}

local function command_text(argv)
  return table.concat(argv, " ")
end

function P.remediate(ctx)
  local argv = ctx.params.on_fail
  if not argv or #argv == 0 then error("no on_fail command: this check only alerts") end
  local r, why = guardian.proc.run(argv, {timeout_ms = ctx.params.on_fail_timeout_ms or 30000})
  if not r then error(why) end
  if r.timed_out then error(command_text(argv) .. " timed out") end
  if r.signal and r.signal ~= 0 then error(command_text(argv) .. " killed by signal " .. r.signal) end
  if r.code ~= 0 then
    error(command_text(argv) .. " exited with code " .. r.code .. ": " .. r.stderr:sub(1, 200))
  end
  return "ran " .. command_text(argv)
end

function P.verify(ctx)
  local ok, why = guardian.probe_until(ctx.params.verify_ms or 10000)
  if not ok then error("still failing: " .. why) end
  return "passes: " .. why
end

return P
