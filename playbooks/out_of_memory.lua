-- out_of_memory: the service is over its RSS limit or was OOM-killed, or the system is short of
-- memory. A ladder, each step verified before the next is tried:
--   backup    record whether the service was in low-memory mode, and whether this check did it
--   remediate the detector saw the memory healthy with room to spare for a while in the
--             low-memory mode this check turned on: leave it. An OOM kill: the process that grew is gone (the supervisor restarts it); its next
--             life runs in low-memory mode. Otherwise: 1. ask it to shed caches (SIGUSR1);
--             2. low-memory mode (flag); 3. restart it, still in low-memory mode, but only when
--             the service itself is over its limit: a service within its limit is never
--             restarted for the system's shortage (that would only add an outage).
--   verify    the service is ready (waiting for it when the supervisor is restarting it) and
--             every configured limit holds
--   rollback  put low-memory mode back as it was (and this check's marker), and the OOM kills
--             counted as handled, so the next attempt handles them again
local P = {
  name = "out_of_memory",
  mode = "out_of_memory",
  description = "shed caches, then low-memory mode, then restart: each step verified",
  timeout = 25000,
  retries = 1,
  disruptive = true,
}

local MIB = 1024 * 1024
local SETTLE_MS = 1500  -- how long a service that does not report its memory gets to shed
local HOLD_MS = 300     -- how long the figures must stay good after a step (growth may go on)
local READY_MS = 10000

local function mib(bytes) return string.format("%.0f MiB", (bytes or 0) / MIB) end

-- What is still wrong by the figures a step can move now (PSI's 10 s average cannot show a
-- step's effect this soon, so it is not asked). Returns service_over, system_short, text.
local function problems(ctx, m)
  local p, why = ctx.params, {}
  local over, short = false, false
  if (p.rss_limit_mb or 0) > 0 and m.rss_bytes and m.rss_bytes > p.rss_limit_mb * MIB then
    over = true
    why[#why + 1] = "RSS " .. mib(m.rss_bytes) .. " over " .. p.rss_limit_mb .. " MiB"
  end
  if m.mem_available_bytes then
    local pct = 100 * m.mem_available_bytes / m.mem_total_bytes
    if ((p.min_available_mb or 0) > 0 and m.mem_available_bytes < p.min_available_mb * MIB)
        or ((p.min_available_percent or 0) > 0 and pct < p.min_available_percent) then
      short = true
      why[#why + 1] = string.format("MemAvailable %s (%.1f%%)", mib(m.mem_available_bytes), pct)
    end
  end
  return over, short, table.concat(why, ", ")
end

-- Once the service has acted on a step, the figures say at once whether it was enough; they
-- must then stay good for HOLD_MS (a leak may still be growing). Returns true and the figures,
-- or false and what is wrong.
local function settled(ctx, hold)
  local waited = 0
  while true do
    local m = guardian.service.memory()
    local over, short, why = problems(ctx, m)
    if over or short then return false, why end
    if waited >= (hold or HOLD_MS) then return true, m end
    guardian.sleep(50)
    waited = waited + 50
  end
end

-- Waits until the service's status report says it shed its caches (the demo app reports
-- memory.cache_bytes), or SETTLE_MS for a service that does not report its memory.
local function wait_shed()
  local waited = 0
  while waited < SETTLE_MS do
    local st = guardian.service.status()
    if st and st.memory and st.memory.cache_bytes == 0 then return end
    guardian.sleep(50)
    waited = waited + 50
  end
end

local LOW = {flag = "low_memory"}
-- The detector's evidence when low-memory mode has had room to spare long enough.
local EXIT_EVIDENCE = "memory healthy in low-memory mode"

-- Low-memory mode on or off; `ours` (default true) marks that this check did it, so that the
-- detector later says when to leave it again.
local function set_low_memory(on, ours)
  local seq, err = guardian.service.degrade("low_memory", on,
                                            {flag = "low_memory", mark = ours ~= false, wait_ms = 3000})
  if not seq then error("could not turn low-memory mode " .. (on and "on" or "off") .. ": " .. err) end
end

local function low_memory_on() set_low_memory(true) end

function P.backup(ctx)
  local was, ours = guardian.service.degraded("low_memory", LOW)
  guardian.state.set("low_before", ctx.incident .. "|" .. tostring(was) .. "|" .. tostring(ours) ..
                     "|" .. (guardian.state.get("oom_kills_handled") or "0"))
  local m = guardian.service.memory()
  return "low-memory mode was " .. (was and "on" or "off") ..
         (ours and " (turned on by this check)" or "") .. "; " ..
         (m.rss_bytes and "RSS " .. mib(m.rss_bytes) or "no process running now")
end

function P.remediate(ctx)
  local m = guardian.service.memory()
  if ctx.evidence:sub(1, #EXIT_EVIDENCE) == EXIT_EVIDENCE then
    local on, ours = guardian.service.degraded("low_memory", LOW)
    if not (on and ours) then return "low-memory mode is not this check's to leave" end
    local over, short, why = problems(ctx, m)
    if over or short then error("not leaving low-memory mode: " .. why) end
    set_low_memory(false)
    return "memory had room to spare (" .. mib(m.rss_bytes) .. " RSS): low-memory mode off"
  end
  local handled = tonumber(guardian.state.get("oom_kills_handled") or "0")
  if m.oom_kills and m.oom_kills > handled then
    local killed = m.oom_kills - handled
    local ready, why = guardian.service.wait_ready(READY_MS)
    if not ready then error("OOM-killed and not back: " .. why) end
    low_memory_on()
    guardian.state.set("oom_kills_handled", tostring(m.oom_kills))
    return "the kernel OOM-killed " .. killed .. " process(es) in " .. m.cgroup ..
           "; the service runs again, now in low-memory mode"
  end

  local over, short, why = problems(ctx, m)
  if not over and not short then
    -- Pressure the kernel reported (PSI) with every limit holding: shedding is the one cheap step.
    guardian.service.signal("USR1")
    return "no limit is crossed now (" .. mib(m.rss_bytes) .. " RSS); asked the service to shed caches"
  end
  local before = m.rss_bytes

  assert(guardian.service.signal("USR1"))
  wait_shed()
  local ok, after = settled(ctx)
  if ok then return "shed caches: RSS " .. mib(before) .. " -> " .. mib(after.rss_bytes) end

  low_memory_on()  -- returns once the service applied it
  ok, after = settled(ctx)
  if ok then
    return "shedding was not enough (" .. why .. "); low-memory mode on: RSS " .. mib(before) ..
           " -> " .. mib(after.rss_bytes)
  end

  local still_over = problems(ctx, guardian.service.memory())
  if not still_over then
    error("the system is short of memory (" .. after .. ") but the service is within its limit: " ..
          "not restarting it for that")
  end
  local restarted, err = guardian.service.restart({wait_ready_ms = READY_MS,
                                                    reason = "out of memory: " .. after})
  if not restarted then error("restart failed: " .. err) end
  ok, after = settled(ctx)
  if not ok then error("still out of memory after a restart in low-memory mode: " .. after) end
  return "caches shed and low-memory mode were not enough (" .. why .. "); restarted in " ..
         "low-memory mode: RSS " .. mib(before) .. " -> " .. mib(after.rss_bytes)
end

function P.verify(ctx)
  local info = guardian.service.info()
  -- An OOM-killed process is restarted by the supervisor, maybe while remediate ran.
  if info.state ~= "ready" and not guardian.service.wait_ready(READY_MS) then
    error(info.name .. " is " .. guardian.service.info().state .. ", not ready")
  end
  local ok, m = settled(ctx, 0)
  if not ok then error("still out of memory: " .. m) end
  return info.name .. " ready; RSS " .. mib(m.rss_bytes)
end

function P.rollback(ctx)
  local recorded = guardian.state.get("low_before") or ""
  local incident, was, ours, handled = recorded:match("^(%d+)|(%a+)|(%a+)|(%d+)$")
  if tonumber(incident) ~= ctx.incident then return "nothing recorded by this incident" end
  set_low_memory(was == "true", ours == "true") -- someone else's low-memory mode stays theirs
  guardian.state.set("oom_kills_handled", handled)
  return "low-memory mode back " .. (was == "true" and "on" or "off")
end

return P
