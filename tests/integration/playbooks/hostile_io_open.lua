-- Test-only hostile playbook: remediate tries to open a file with the io library, which the
-- sandbox does not provide ("undefined global 'io'").
return {
  name = "hostile_io_open",
  mode = "missing_config",
  description = "tries io.open",
  retries = 0,
  remediate = function(ctx)
    local f = io.open("/etc/guardian-pwned", "w")
    f:write("x")
    f:close()
    return "wrote outside the sandbox"
  end,
}
