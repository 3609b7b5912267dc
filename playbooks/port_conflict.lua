-- port_conflict: the service's port is held by another process, or the service was moved off its
-- preferred port and that port is free again.
--   backup    record the port the service was on, with this incident's id
--   remediate a stale instance of our own program (same executable, not the supervised process):
--             stop it (TERM, grace, KILL; pid and start time checked) and restart the service on
--             its port. A foreign holder: never touch it; move the service to the next free port
--             of its range and restart it there. A moved service whose preferred port is free
--             again: move it back.
--   verify    the service is ready again, or up and listening on its port while its boot goes on
--             (the engine then re-probes who holds the port)
--   rollback  put the service back on the port it had before this incident and restart it
local P = {
  name = "port_conflict",
  mode = "port_conflict",
  description = "stop a stale instance of our own app, or move the app off a foreign process's port",
  timeout = 8000,
  retries = 2,
  disruptive = true,
}

-- How long a restarted service has to take its port. Only that much is this playbook's to wait
-- for: a boot that goes on slowly after the bind is the slow_boot check's to judge, and waiting
-- here for full readiness would fail (and roll back) a move that worked.
local LISTEN_MS = 5000

function P.backup(ctx)
  local info = guardian.service.info()
  guardian.state.set("before", ctx.incident .. "|" .. info.port)
  return info.name .. " was on port " .. info.port .. " (preferred " .. info.preferred_port .. ")"
end

-- Whether the service is ready, or up and listening on its port (still booting).
local function holds_port()
  local info = guardian.service.info()
  if info.state == "ready" then return true, info end
  if info.state ~= "starting" then return false, info end
  local survey = guardian.service.port_owners()
  for _, h in ipairs(survey and survey.holders or {}) do
    if h.ours then return true, info end
  end
  return false, info
end

local function restart(why)
  local ok, err = guardian.service.restart({reason = why})
  if not ok then error("restart failed: " .. err) end
  local info
  for _ = 1, LISTEN_MS // 50 do
    ok, info = holds_port()
    if ok then return info end
    guardian.sleep(50)
  end
  error("restart failed: " .. info.name .. " is " .. info.state .. ", not listening on port " ..
        info.port .. " within " .. LISTEN_MS .. " ms")
end

function P.remediate(ctx)
  local info = guardian.service.info()
  local survey = assert(guardian.service.port_owners())
  local stale, foreign = {}, {}
  for _, h in ipairs(survey.holders) do
    if h.same_program then
      stale[#stale + 1] = h
    elseif not h.ours then
      foreign[#foreign + 1] = h
    end
  end
  local done = {}
  for _, h in ipairs(stale) do
    local ok, err = guardian.service.stop_stale(h.pid, h.start_ticks,
                                                {grace_ms = ctx.params.stop_grace_ms or 2000})
    if not ok then error("could not stop stale instance pid " .. h.pid .. ": " .. err) end
    done[#done + 1] = "stopped a stale instance of our own program (" .. h.description .. ")"
  end
  if #foreign > 0 or (#stale == 0 and survey.unattributed > 0) then
    local holder = #foreign > 0 and foreign[1].description or "a process this user cannot see"
    local port, err = guardian.service.free_port()
    if not port then error("port " .. survey.port .. " is held by " .. holder .. " and " .. err) end
    assert(guardian.service.set_port(port, "port " .. survey.port .. " held by " .. holder))
    done[#done + 1] = "left port " .. survey.port .. " to " .. holder .. "; moved " ..
                      info.name .. " to port " .. port
  elseif #stale == 0 and info.port ~= info.preferred_port then
    local home = assert(guardian.service.port_owners(info.preferred_port))
    if #home.holders > 0 or home.unattributed > 0 then
      return "preferred port " .. info.preferred_port .. " is taken again; staying on " .. info.port
    end
    assert(guardian.service.set_port(info.preferred_port, "preferred port free again"))
    done[#done + 1] = "moved " .. info.name .. " back to its preferred port " .. info.preferred_port
  end
  if #done == 0 then return "port " .. survey.port .. " is no longer contested; nothing to do" end
  local info = restart("port conflict: " .. done[#done])
  return table.concat(done, "; ") .. "; restarted, " .. (info.state == "ready" and "ready" or "listening")
end

function P.verify(ctx)
  local ok, info = holds_port()
  if not ok then error(info.name .. " is " .. info.state .. " and not listening on port " .. info.port) end
  return info.name .. (info.state == "ready" and " ready" or " listening (still booting)") ..
         " on port " .. info.port
end

function P.rollback(ctx)
  local recorded = guardian.state.get("before") or ""
  local incident, port = recorded:match("^(%d+)|(%d+)$")
  if tonumber(incident) ~= ctx.incident then return "nothing recorded by this incident" end
  port = tonumber(port)
  if guardian.service.info().port == port then return "still on port " .. port end
  assert(guardian.service.set_port(port, "rolled back by incident " .. ctx.incident))
  restart("port_conflict rollback")
  return "back on port " .. port
end

return P
