-- Test-only hostile playbook: remediate tries to load a module with require (and would then
-- use io through it). The sandbox has no require ("undefined global 'require'").
return {
  name = "hostile_require",
  mode = "missing_config",
  description = "tries require",
  retries = 0,
  remediate = function(ctx)
    local io = require("io")
    io.open("/etc/guardian-pwned", "w"):write("x")
    return "loaded io"
  end,
}
