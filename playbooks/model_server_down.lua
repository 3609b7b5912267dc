-- model_server_down: the model server (Ollama's API) refuses, errors, hangs, or is too slow to
-- generate one token. The server is a supervised service (params.server, started with its
-- configured argv: the Ollama stand-in, or `ollama serve` when a real one is installed).
--   backup    note the server's state and whether the feature is degraded
--   remediate the feature degraded by this playbook and the server answering well (it came
--             back): re-enable the feature. Else (the detector has just seen it fail) restart
--             the server (a hung one is killed: SIGTERM, then SIGKILL after its stop_grace_ms)
--             and give it ready_timeout_ms (10 s) to list the model in /api/tags and answer a
--             one-token generate. Not ready by then: degrade the
--             feature in the using service's flags, alert, and fail (the engine escalates; the
--             hold lifts by itself when the server answers again)
--   verify    a one-token generate answers, and the feature is enabled
--   rollback  re-enable the feature only if the server answers again
local P = {
  name = "model_server_down",
  mode = "model_server_down",
  description = "restart the model server and wait for a one-token generate, else degrade model features",
  timeout = 25000,
  retries = 0, -- one restart per incident: a server that cannot start is not restarted in a loop
  disruptive = true,
}

local function feature(ctx) return ctx.params.feature or "model" end
local function url(ctx) return (ctx.params.url:gsub("/+$", "")) end

-- Whether the feature is degraded, and whether this check did it (its marker); the feature is
-- the using service's (params.service), when the check names one.
local function is_degraded(ctx)
  return ctx.params.service ~= nil and (guardian.service.degraded(feature(ctx)))
end
local function degraded_by_us(ctx)
  return ctx.params.service ~= nil and select(2, guardian.service.degraded(feature(ctx)))
end

local function set_degraded(ctx, on)
  if not ctx.params.service then return end
  local seq, err = guardian.service.degrade(feature(ctx), on, {wait_ms = 3000})
  if not seq then error("could not change the service's features: " .. err) end
end

local function reenable(ctx)
  if not degraded_by_us(ctx) then return "" end
  set_degraded(ctx, false)
  return "; '" .. feature(ctx) .. "' re-enabled"
end

-- One token from the model: good, and what happened.
local function generate(ctx, deadline_ms)
  local body = '{"model": "' .. ctx.params.model .. '", "prompt": "Say ok.", "stream": false, ' ..
               '"options": {"num_predict": 1}}'
  local r = guardian.http.post(url(ctx) .. "/api/generate", body,
                               {timeout_ms = math.max(deadline_ms, 1),
                                headers = {"Content-Type: application/json"}})
  if not r.ok then return false, "generate: " .. r.error_kind .. " after " .. r.ms .. " ms" end
  if r.status ~= 200 then return false, "generate answered " .. r.status end
  return true, "generate answered in " .. r.ms .. " ms"
end

-- Waits until /api/tags lists the model, then one generate, within `budget_ms` in all.
local function wait_model_ready(ctx, budget_ms)
  local start = guardian.now()
  local left = function() return budget_ms - (guardian.now() - start) end
  local want = ctx.params.model
  local seen = "no answer"
  while left() > 0 do
    local r = guardian.http.get(url(ctx) .. "/api/tags", {timeout_ms = math.max(math.min(left(), 2000), 1)})
    if r.ok and r.status == 200 then
      local listed = false
      for _, m in ipairs((r.json or {}).models or {}) do
        if m.name == want or m.name == want .. ":latest" then listed = true end
      end
      if listed then
        local ok, what = generate(ctx, left())
        if ok then return true, "/api/tags lists " .. want .. "; " .. what end
        seen = what
      else
        seen = "/api/tags does not list " .. want
      end
    elseif r.ok then
      seen = "/api/tags answered " .. r.status
    else
      seen = "/api/tags " .. r.error_kind
    end
    if left() > 0 then guardian.sleep(math.min(100, math.max(left(), 0))) end
  end
  return false, seen
end

function P.backup(ctx)
  local info = ctx.params.server and guardian.server.info() or {}
  return "server " .. (ctx.params.server or "(not supervised)") .. " " .. tostring(info.state) ..
         (info.pid and (" pid " .. info.pid) or "") .. "; '" .. feature(ctx) .. "' " ..
         (is_degraded(ctx) and "degraded" or "enabled")
end

function P.remediate(ctx)
  local deadline = ctx.params.generate_deadline_ms or 5000
  local what = "the check saw it fail"
  if degraded_by_us(ctx) then
    -- The check reported the server answering again (new input): re-enable, no restart.
    local ok
    ok, what = generate(ctx, deadline)
    if ok then return "the model server answers again (" .. what .. ")" .. reenable(ctx) end
  end
  -- Otherwise the detector has just seen it fail: asking again would wait out a hung server.
  if not ctx.params.server then
    set_degraded(ctx, true)
    error("the model server is not supervised here, and " .. what .. ": '" .. feature(ctx) .. "' degraded")
  end
  local budget = ctx.params.ready_timeout_ms or 10000
  local started = guardian.now()
  local restarted, err = guardian.server.restart({wait_ready_ms = budget,
                                                  reason = "model_server_down: " .. what})
  local ready, seen = false, err
  if restarted then
    ready, seen = wait_model_ready(ctx, budget - (guardian.now() - started))
  end
  if ready then
    return "restarted the model server (" .. what .. "); ready in " .. (guardian.now() - started) ..
           " ms: " .. seen .. reenable(ctx)
  end
  set_degraded(ctx, true)
  guardian.log.error("ALERT: the model server is not ready " .. budget .. " ms after its restart (" ..
                     tostring(seen) .. "); '" .. feature(ctx) .. "' degraded")
  error("restarted the model server, not ready within " .. budget .. " ms (" .. tostring(seen) ..
        "): '" .. feature(ctx) .. "' degraded until it answers")
end

function P.verify(ctx)
  local ok, what = generate(ctx, ctx.params.generate_deadline_ms or 5000)
  if not ok then error(what) end
  if degraded_by_us(ctx) then error("'" .. feature(ctx) .. "' is still degraded") end
  return what
end

function P.rollback(ctx)
  if not degraded_by_us(ctx) then return "'" .. feature(ctx) .. "' is enabled; nothing to undo" end
  local ok, what = generate(ctx, ctx.params.generate_deadline_ms or 5000)
  if ok then
    set_degraded(ctx, false)
    return "the model server answers (" .. what .. "): '" .. feature(ctx) .. "' re-enabled"
  end
  return "'" .. feature(ctx) .. "' stays degraded: " .. what
end

return P
