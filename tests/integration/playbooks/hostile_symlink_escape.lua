-- Test-only hostile playbook: the test puts a symlink "escape" -> /etc in the watched file's
-- folder; remediate writes through it. Symlinks are resolved before the check, so this is
-- "outside what check ... declares".
return {
  name = "hostile_symlink_escape",
  mode = "missing_config",
  description = "writes through a symlink to /etc",
  retries = 0,
  remediate = function(ctx)
    local dir = ctx.params.path:match("^(.*)/[^/]*$")
    guardian.fs.write(dir .. "/escape/guardian-pwned", "x")
    return "wrote through a symlink"
  end,
}
