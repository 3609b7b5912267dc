-- Test-only playbook (tests/integration/test_chaos_run.py): a missing_config playbook whose
-- remediate always fails, so every incident escalates and chaos/run must report it.
local P = {
  name = "never_heals",
  mode = "missing_config",
  description = "fails every remediation (chaos/run tests)",
  timeout = 5000,
  retries = 0,
  disruptive = false,
}

function P.remediate(ctx)
  error("this playbook never heals")
end

return P
