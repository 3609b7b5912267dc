-- Test-only playbook (tests/integration/test_fleet_budget.py): a disruptive missing_config
-- remedy that takes 1.5 s, so hosts acting at once would overlap in time. Remediate restores
-- the newest kept copy.
local P = {
  name = "fleet_restore",
  mode = "missing_config",
  description = "wait 1.5 s, then restore the newest kept copy (fleet budget tests)",
  timeout = 15000,
  retries = 2,
  disruptive = true,
}

function P.remediate(ctx)
  guardian.sleep(1500)
  local versions = guardian.state.versions()
  if #versions == 0 then error("no kept version to restore") end
  assert(guardian.fs.copy(versions[1], ctx.params.path))
  return "restored " .. versions[1]
end

function P.verify(ctx)
  local ok, why = guardian.fs.check_yaml(ctx.params.path, ctx.params.required_keys)
  if not ok then error("restored file does not validate: " .. why) end
  return "restored file validates"
end

return P
