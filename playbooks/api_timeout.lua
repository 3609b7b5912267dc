-- api_timeout: the upstream API a service calls is too slow or failing (a circuit breaker, whose
-- state is the service's flags: active_upstream "backup" means open).
--   backup    record the routing and the timeout as they were
--   remediate breaker closed (the detector saw the primary fail): when the backup answers well, open the
--             breaker: route the service to the backup and lower its upstream timeout
--             (30 s -> 10 s on the first attempt, 5 s on the next). Breaker open and the primary
--             answering well again (half-open probes): close it, route back, restore the
--             timeout. Both failing: fail, so the engine retries and then escalates.
--   verify    the endpoint now in use answers within the latency limit
--   rollback  put the routing and the timeout back as they were
local P = {
  name = "api_timeout",
  mode = "api_timeout",
  description = "open the circuit to the backup endpoint with lower timeouts; close it when the primary recovers",
  timeout = 15000,
  retries = 1,
  disruptive = true,
}

local TIMEOUTS_MS = {10000, 5000}

-- Probes `base`; returns good, and what happened ("answered 200 in 3 ms", "timeout (...)").
local function probe(ctx, base)
  local limit = ctx.params.latency_limit_ms or 2000
  local r = guardian.http.get(base .. (ctx.params.probe_path or "/healthz"), {timeout_ms = limit})
  if not r.ok then return false, r.error_kind .. " (" .. tostring(r.error) .. ")" end
  local what = "answered " .. r.status .. " in " .. r.ms .. " ms"
  return r.status < 500 and r.ms <= limit, what
end

local function route(fields)
  local seq, err = guardian.service.set_flags(fields, {wait_ms = 3000})
  if not seq then error("could not change the service's routing: " .. err) end
end

function P.backup(ctx)
  local fl = guardian.service.flags()
  local active, timeout = fl.active_upstream or "primary", fl.upstream_timeout_ms or 0
  guardian.state.set("before", ctx.incident .. "|" .. active .. "|" .. timeout)
  return "routed to the " .. active .. ", upstream timeout " ..
         (timeout > 0 and timeout .. " ms" or "the service's own")
end

function P.remediate(ctx)
  local active = guardian.service.flags().active_upstream or "primary"
  if active == "backup" then
    local primary_good, primary = probe(ctx, ctx.params.primary)
    if primary_good then
      route({active_upstream = "primary", upstream_timeout_ms = 0})
      return "circuit closed: the primary " .. primary .. "; routed back to it, timeout restored"
    end
    local backup_good, backup = probe(ctx, ctx.params.backup)
    if backup_good then return "circuit stays open: the primary " .. primary .. "; the backup " .. backup end
    error("the primary " .. primary .. " and the backup " .. backup .. ": nowhere to route")
  end
  -- The detector has just seen the primary fail (probing it again would wait out a hung one):
  -- what is left to know is whether the backup can take over.
  local backup_good, backup = probe(ctx, ctx.params.backup)
  if not backup_good then
    error("the primary fails and the backup " .. backup .. " too: not routing to it")
  end
  local timeout = TIMEOUTS_MS[math.min(ctx.attempt, #TIMEOUTS_MS)]
  route({active_upstream = "backup", upstream_timeout_ms = timeout})
  return "circuit open: routed to the backup (it " .. backup .. "), upstream timeout lowered to " ..
         (timeout // 1000) .. " s; the primary is retried at every probe"
end

function P.verify(ctx)
  local active = guardian.service.flags().active_upstream or "primary"
  local good, what = probe(ctx, active == "backup" and ctx.params.backup or ctx.params.primary)
  if not good then error("the " .. active .. " in use " .. what) end
  return "the " .. active .. " in use " .. what
end

function P.rollback(ctx)
  local recorded = guardian.state.get("before") or ""
  local incident, active, timeout = recorded:match("^(%d+)|(%a+)|(%d+)$")
  if tonumber(incident) ~= ctx.incident then return "nothing recorded by this incident" end
  route({active_upstream = active, upstream_timeout_ms = tonumber(timeout)})
  return "routed to the " .. active .. " again, timeout as it was"
end

return P
