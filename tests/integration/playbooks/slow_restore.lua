-- Test-only playbook (tests/integration/test_crash_recovery.py): like missing_config, but
-- remediate waits 3 s (guardian.sleep yields; the loop stays free) before restoring the newest
-- last-known-good copy, so a test can SIGKILL guardiand while remediate is `running`.
local P = {
  name = "slow_restore",
  mode = "missing_config",
  description = "restore the newest kept copy after a 3 s pause (crash-recovery tests)",
  timeout = 15000,
  retries = 2,
  disruptive = false,
}

function P.backup(ctx)
  local path = ctx.params.path
  if not guardian.fs.exists(path) then
    guardian.state.set("aside", "none")
    return "the file is missing; nothing to keep aside"
  end
  local dir = ctx.state_dir .. "/aside"
  assert(guardian.fs.mkdir(dir))
  local aside = dir .. "/incident-" .. ctx.incident .. "-attempt-" .. ctx.attempt .. ".yaml"
  assert(guardian.fs.copy(path, aside))
  guardian.state.set("aside", aside)
  return "kept the broken file as " .. aside
end

function P.remediate(ctx)
  guardian.sleep(3000)
  local versions = guardian.state.versions()
  if #versions == 0 then error("no kept version to restore") end
  local ok, err = guardian.fs.copy(versions[1], ctx.params.path)
  if not ok then error("copy failed: " .. err) end
  return "restored " .. versions[1] .. " after a pause"
end

function P.verify(ctx)
  local ok, why = guardian.fs.check_yaml(ctx.params.path, ctx.params.required_keys)
  if not ok then error("restored file does not validate: " .. why) end
  return "restored file validates"
end

function P.rollback(ctx)
  local aside = guardian.state.get("aside")
  if aside == nil then return "nothing recorded to roll back" end
  if aside == "none" then
    if guardian.fs.exists(ctx.params.path) then assert(guardian.fs.remove(ctx.params.path)) end
    return "removed the restored file (there was none before)"
  end
  assert(guardian.fs.copy(aside, ctx.params.path))
  return "put the user's file back from " .. aside
end

return P
