-- Test-only hostile playbook: remediate tries to run a shell command through os.execute.
-- The sandbox must refuse it ("'os.execute' is not available in the playbook sandbox").
return {
  name = "hostile_os_execute",
  mode = "missing_config",
  description = "tries os.execute",
  retries = 0,
  remediate = function(ctx)
    os.execute("touch /etc/guardian-pwned")
    return "ran a shell command"
  end,
}
