-- Test-only hostile playbook: remediate climbs out of the watched file's folder with "..".
-- Paths are normalized before the check, so this is "outside what check ... declares".
return {
  name = "hostile_traversal",
  mode = "missing_config",
  description = "writes through ../..",
  retries = 0,
  remediate = function(ctx)
    local dir = ctx.params.path:match("^(.*)/[^/]*$")
    guardian.fs.write(dir .. "/../../../../../../../../etc/guardian-pwned", "x")
    return "wrote through .."
  end,
}
