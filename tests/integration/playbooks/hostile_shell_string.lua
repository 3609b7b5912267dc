-- Test-only hostile playbook: guardian.proc.run takes an argv vector only. The argv form runs
-- (its output is logged into the step message); a command line as one string must raise, not
-- go through a shell. The string names a marker file a shell would create: the test checks it
-- is absent. (A destructive string such as "rm -rf /" is not used on purpose: if the product
-- regressed to a shell, this test must not destroy the machine it runs on.)
return {
  name = "hostile_shell_string",
  mode = "missing_config",
  description = "tries a shell command line",
  retries = 0,
  remediate = function(ctx)
    local r = guardian.proc.run({"echo", "argv-form-ran"})
    if r then guardian.log.info("argv form: code " .. r.code .. ", stdout " .. r.stdout) end
    local marker = ctx.params.path .. ".shell-marker"
    guardian.proc.run("touch " .. marker)
    return "ran a shell string"
  end,
}
