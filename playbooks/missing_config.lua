-- missing_config: bring back a watched YAML config file that was deleted, emptied, corrupted or
-- stripped of a required key.
--   backup    keep the broken file (if any) aside for the operator, under the check's state dir
--   remediate restore the newest last-known-good copy that still validates, else <file>.bak,
--             else the check's defaults_file
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

local function restore_from(ctx, source, what)
  local ok, err = guardian.fs.copy(source, ctx.params.path)
  if not ok then error("copying " .. what .. " failed: " .. err) end
  return "restored " .. what .. " (" .. source .. ")"
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
