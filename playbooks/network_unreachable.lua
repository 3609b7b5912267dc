-- network_unreachable: every target the stack needs is cut off (DNS and TCP), not one upstream.
-- Offline mode is the service's flag: it stops calling out (the demo app answers 503 "offline
-- mode" and queues nothing, so there is nothing to replay). The detector, not this playbook,
-- probes while offline, on a backoff schedule (10 s, 30 s, 60 s), and reports the network's
-- return as new input.
--   backup    record whether offline mode was on, and whether this check had turned it on
--   remediate offline mode turned on by this check and the network back: turn it off. Else turn
--             it on (the marker in the check's folder says this check did)
--   verify    the service acknowledged its flags (set_flags waits for it)
--   rollback  put offline mode back as it was before this incident
local P = {
  name = "network_unreachable",
  mode = "network_unreachable",
  description = "offline mode on while the network is down, off when probes pass",
  timeout = 5000,
  retries = 1,
  disruptive = false,
}

local OFFLINE = {flag = "offline_mode"}

-- Offline mode on, and whether this check turned it on (its marker).
local function offline() return guardian.service.degraded("offline_mode", OFFLINE) end

-- `ours`: this check owns the state (marked); false restores someone else's offline mode.
local function set_offline(ctx, on, ours)
  local seq, err = guardian.service.degrade("offline_mode", on,
                                            {flag = "offline_mode", mark = ours ~= false, wait_ms = 3000})
  if not seq then error("could not change the service's offline mode: " .. err) end
end

function P.backup(ctx)
  local on, ours = offline()
  guardian.state.set("before", ctx.incident .. "|" .. tostring(on) .. "|" .. tostring(ours))
  return "offline mode " .. (on and "on" or "off") .. (ours and " (turned on by this check)" or "")
end

function P.remediate(ctx)
  if select(2, offline()) then
    set_offline(ctx, false)
    return "the network is back: offline mode off"
  end
  set_offline(ctx, true)
  return "network down: offline mode on; the check probes again after " ..
         table.concat(ctx.params.offline_probe_ms or {"10000", "30000", "60000"}, ", ") .. " ms"
end

function P.verify(ctx)
  local on = guardian.service.flags().offline_mode == true
  return "the service runs with offline mode " .. (on and "on" or "off")
end

function P.rollback(ctx)
  local recorded = guardian.state.get("before") or ""
  local incident, on, ours = recorded:match("^(%d+)|(%a+)|(%a+)$")
  if tonumber(incident) ~= ctx.incident then return "nothing recorded by this incident" end
  set_offline(ctx, on == "true", ours == "true") -- someone else's offline mode stays theirs
  return "offline mode " .. (on == "true" and "on" or "off") .. " again, as before"
end

return P
