-- Test-only hostile playbook: remediate never returns. The instruction budget must stop it
-- ("instruction budget exceeded"), even though it swallows errors with pcall.
return {
  name = "hostile_loop",
  mode = "missing_config",
  description = "loops forever",
  timeout = 20000,
  retries = 0,
  remediate = function(ctx)
    local n = 0
    while true do
      pcall(function() n = n + 1 end)
    end
  end,
}
