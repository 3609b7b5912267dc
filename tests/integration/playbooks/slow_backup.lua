-- Test-only playbook (tests/integration/test_crash_recovery.py): backup waits 3 s before doing
-- anything, so a test can SIGKILL guardiand right after an incident opens, before remediation
-- has started. Remediate restores the newest last-known-good copy at once.
local P = {
  name = "slow_backup",
  mode = "missing_config",
  description = "pause 3 s in backup, then restore the newest kept copy (crash-recovery tests)",
  timeout = 15000,
  retries = 2,
}

function P.backup(ctx)
  guardian.sleep(3000)
  return "paused before remediation"
end

function P.remediate(ctx)
  local versions = guardian.state.versions()
  if #versions == 0 then error("no kept version to restore") end
  local ok, err = guardian.fs.copy(versions[1], ctx.params.path)
  if not ok then error("copy failed: " .. err) end
  return "restored " .. versions[1]
end

function P.verify(ctx)
  local ok, why = guardian.fs.check_yaml(ctx.params.path, ctx.params.required_keys)
  if not ok then error("restored file does not validate: " .. why) end
  return "restored file validates"
end

return P
