-- missing_config: bring back a watched YAML config file that was deleted, emptied, corrupted or
-- stripped of a required key.
--   backup    keep the broken file (if any) aside for the operator, under the check's state dir
--   remediate restore the newest last-known-good copy that still validates, else <file>.bak,
--             else the check's defaults_file; with a service, have it reload the file (SIGHUP,
--             its status file confirms); say what changed (a diff of the broken file against
--             the restored one, secret-looking values masked)
--   verify    the restored file validates (the engine then re-probes with the detector)
--   rollback  put the user's file back exactly as it was (or remove ours if there was none)
-- Every phase is idempotent: after a crash the engine may run rollback or a new attempt again.
-- What backup kept is recorded with its incident id, so a rollback never uses an older incident's copy.

local P = {
  name = "missing_config",
  mode = "missing_config",
  description = "restore a config file from its last-known-good copy",
  timeout = 8000,
  retries = 2,
  disruptive = false,
}

local SECRET_KEY = {"pass", "secret", "token", "key", "credential"}

-- A unified diff of the broken file (kept aside by backup) against the restored one, for the
-- incident: at most 40 lines, and the value of any key that looks like a secret masked.
local function diff(ctx)
  local recorded = guardian.state.get("aside") or ""
  local incident, aside = recorded:match("^(%d+)|(.*)$")
  if tonumber(incident) ~= ctx.incident then return "" end
  if aside == "none" then return "\n(the file was missing)" end
  local r = guardian.proc.run({"diff", "-u", "--label", "broken", "--label", "restored", aside,
                               ctx.params.path}, {timeout_ms = 2000})
  if not r or r.code > 1 then return "" end
  local out, n = {}, 0
  for line in r.stdout:gmatch("[^\n]+") do
    n = n + 1
    if n > 40 then
      out[#out + 1] = "... (" .. select(2, r.stdout:gsub("\n", "")) - 40 .. " more lines)"
      break
    end
    local lower = line:lower()
    for _, word in ipairs(SECRET_KEY) do
      local key = lower:match("^[-+ ]%s*([%w_.-]*" .. word .. "[%w_.-]*)%s*:")
      if key then line = line:match("^([-+ ]%s*[^:]+:)") .. " ***" break end
    end
    out[#out + 1] = line
  end
  return "\n" .. table.concat(out, "\n")
end

-- Asks the service that reads the file to reload it (SIGHUP) and waits until it says it did
-- (its status file's config.loaded_at), up to 3 s. Without a service there is no one to ask.
local function reload(ctx)
  if not ctx.params.service then return "" end
  if guardian.service.info().state ~= "ready" then
    local ready, why = guardian.service.wait_ready(10000)
    if not ready then error("restored, but the service is not ready: " .. why) end
  end
  local asked = guardian.now()
  assert(guardian.service.signal("HUP"))
  for _ = 1, 60 do
    local st = guardian.service.status()
    local c = st and st.config
    if c and c.error ~= nil and type(c.error) == "table" and c.error.at >= asked then
      error("restored, but the service refused it on reload: " .. tostring(c.error.message))
    end
    if c and c.loaded_at and c.loaded_at >= asked then return "; the service reloaded it" end
    guardian.sleep(50)
  end
  error("restored, but the service did not report a reload within 3 s")
end

local function restore_from(ctx, source, what)
  local ok, err = guardian.fs.copy(source, ctx.params.path)
  if not ok then error("copying " .. what .. " failed: " .. err) end
  return "restored " .. what .. " (" .. source .. ")" .. reload(ctx) .. diff(ctx)
end

function P.backup(ctx)
  local path = ctx.params.path
  if not guardian.fs.exists(path) then
    guardian.state.set("aside", ctx.incident .. "|none")
    return "the file is missing; nothing to keep aside"
  end
  local dir = ctx.state_dir .. "/aside"
  assert(guardian.fs.mkdir(dir))
  local aside = dir .. "/incident-" .. ctx.incident .. "-attempt-" .. ctx.attempt .. ".yaml"
  assert(guardian.fs.copy(path, aside))
  guardian.state.set("aside", ctx.incident .. "|" .. aside)
  return "kept the broken file as " .. aside
end

function P.remediate(ctx)
  local path, keys = ctx.params.path, ctx.params.required_keys
  for _, version in ipairs(guardian.state.versions()) do
    if guardian.fs.check_yaml(version, keys) then
      return restore_from(ctx, version, "the last-known-good copy")
    end
    guardian.log.warn("kept copy " .. version .. " no longer validates; trying an older one")
  end
  local bak = path .. ".bak"
  if guardian.fs.exists(bak) and guardian.fs.check_yaml(bak, keys) then
    return restore_from(ctx, bak, "the .bak file")
  end
  local defaults = ctx.params.defaults_file
  if defaults and guardian.fs.check_yaml(defaults, keys) then
    guardian.log.warn("no good copy of " .. path .. "; writing defaults, review them")
    return restore_from(ctx, defaults, "the defaults")
  end
  error("nothing valid to restore " .. path .. " from: no kept copy, no valid .bak, no defaults_file")
end

function P.verify(ctx)
  local ok, why = guardian.fs.check_yaml(ctx.params.path, ctx.params.required_keys)
  if not ok then error("restored file does not validate: " .. why) end
  return "restored file validates"
end

function P.rollback(ctx)
  -- Only what this incident's backup kept: an older incident's copy is not the user's file now.
  local recorded = guardian.state.get("aside") or ""
  local incident, aside = recorded:match("^(%d+)|(.*)$")
  if tonumber(incident) ~= ctx.incident then return "nothing kept by this incident to roll back" end
  if aside == "none" then
    if guardian.fs.exists(ctx.params.path) then assert(guardian.fs.remove(ctx.params.path)) end
    return "removed the restored file (there was none before)"
  end
  assert(guardian.fs.copy(aside, ctx.params.path))
  return "put the user's file back from " .. aside
end

return P
