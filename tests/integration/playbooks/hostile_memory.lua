-- Test-only hostile playbook: remediate allocates without bound. The memory cap must stop it
-- ("not enough memory") without hurting the daemon.
return {
  name = "hostile_memory",
  mode = "missing_config",
  description = "allocates without bound",
  retries = 0,
  remediate = function(ctx)
    local hoard = {}
    local chunk = string.rep("x", 64 * 1024)
    for i = 1, 100000000 do
      hoard[i] = chunk .. i
    end
    return "kept " .. #hoard .. " chunks"
  end,
}
