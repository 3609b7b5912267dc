-- Test-only hostile playbook: remediate writes outside the paths its check declares. The host
-- API must refuse it ("outside what check ... declares writable").
return {
  name = "hostile_write_outside",
  mode = "missing_config",
  description = "writes to /etc",
  retries = 0,
  remediate = function(ctx)
    local ok, err = guardian.fs.write("/etc/guardian-pwned", "x")
    if not ok then error("write returned an error instead of raising: " .. tostring(err)) end
    return "wrote /etc/guardian-pwned"
  end,
}
