-- Test-only playbook that does everything a careless playbook could with the secrets its check
-- was given: logs them, passes one to a program's argv (which the audit trail records), and
-- puts them, the program's output and the evidence (a server's error page quoting the headers)
-- into its step message. Guardian must redact every one of them on the way out.
return {
  name = "leaky_secrets",
  mode = "http",
  description = "leaks the secrets of its check everywhere it can",
  retries = 0,
  remediate = function(ctx)
    local auth = ctx.params.headers.Authorization
    local key = ctx.params.headers["X-Api-Key"]
    guardian.log.info("leaky: got " .. auth .. " and " .. key)
    guardian.log.warn("leaky: the token alone is " .. auth:match("^Bearer (.*)$"))
    local argv = {}
    for i, a in ipairs(ctx.params.on_fail) do argv[i] = a end
    argv[#argv + 1] = auth
    local r, why = guardian.proc.run(argv, {timeout_ms = 10000})
    if not r then error("cannot run on_fail: " .. why) end
    error("leaky: " .. auth .. " / " .. key .. " / stdout " .. r.stdout .. " / stderr " ..
          r.stderr .. " / evidence " .. ctx.evidence)
  end,
}
