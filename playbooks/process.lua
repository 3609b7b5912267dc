-- process: restart a program known by its pidfile with the check's own commands (Monit's
-- `restart`). `params.stop` runs first only while the process still runs (the probe found it
-- not answering, or this is a retry); a process that exited is only started again.
--   remediate stop (if it runs), then start; both are argv, started without a shell
--   verify    re-probe every 10 ms until the new process runs and answers, up to
--             params.start_timeout_ms (10 s)

local P = {
  name = "process",
  mode = "process",
  description = "restart a pidfile process with its start/stop commands",
  retries = 2,
  disruptive = true,
}

local function run(argv, what)
  local r, why = guardian.proc.run(argv, {timeout_ms = 30000})
  if not r then error(what .. ": " .. why) end
  if r.timed_out then error(what .. " timed out") end
  if r.code ~= 0 then
    error(what .. " exited with code " .. tostring(r.code) .. ": " .. r.stderr:sub(1, 200))
  end
end

function P.remediate(ctx)
  local p = ctx.params
  local exited = ctx.attempt == 1 and ctx.evidence:match("^not running:") ~= nil
  local done = {}
  if not exited and p.stop then
    run(p.stop, "stop")
    done[#done + 1] = "stopped"
  end
  run(p.start, "start")
  done[#done + 1] = "started"
  return table.concat(done, ", ") .. " (" .. ctx.evidence .. ")"
end

function P.verify(ctx)
  local limit = ctx.params.start_timeout_ms or 10000
  local ok, why = guardian.probe_until(limit)
  if not ok then error("not up within " .. limit .. " ms: " .. why) end
  return "passes: " .. why
end

return P
