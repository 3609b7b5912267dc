-- Test-only hostile playbook (tests/integration/test_hostile_playbooks.py, HostileAttemptsTest):
-- each check that uses it is named CALL-WAY: one host call that takes a path (guardian.fs,
-- guardian.disk, guardian.sqlite) given a path that leads out of the check's folder one WAY:
--   dotdot   FOLDER/../outside/NAME
--   link     FOLDER/link/NAME, where the test made FOLDER/link -> ../outside
--   final    FOLDER/secret-link, where the test made it -> ../outside/secret.txt
--   sibling  FOLDER-evil/NAME, a folder whose name only starts like the check's
-- The path policy must refuse each (it raises). If a call answers instead, the step fails with
-- "NOT REFUSED" and what it answered, which the test reports.
local function dir(ctx) return (ctx.params.path:match("^(.*)/[^/]*$")) end

local function away(ctx, way, name)
  local d = dir(ctx)
  if way == "dotdot" then return d .. "/../outside/" .. name end
  if way == "link" then return d .. "/link/" .. name end
  if way == "final" then return d .. "/secret-link" end
  if way == "sibling" then return d .. "-evil/" .. name end
  error("no way named " .. way)
end

local calls = {
  read = function(ctx, way) return guardian.fs.read(away(ctx, way, "secret.txt")) end,
  write = function(ctx, way) return guardian.fs.write(away(ctx, way, "pwned"), "x") end,
  copy_from = function(ctx, way)
    return guardian.fs.copy(away(ctx, way, "secret.txt"), dir(ctx) .. "/stolen")
  end,
  copy_to = function(ctx, way) return guardian.fs.copy(ctx.params.path, away(ctx, way, "pwned")) end,
  move_from = function(ctx, way)
    return guardian.fs.move(away(ctx, way, "secret.txt"), dir(ctx) .. "/stolen")
  end,
  move_to = function(ctx, way) return guardian.fs.move(ctx.params.path, away(ctx, way, "pwned")) end,
  remove = function(ctx, way) return guardian.fs.remove(away(ctx, way, "secret.txt")) end,
  mkdir = function(ctx, way) return guardian.fs.mkdir(away(ctx, way, "newdir")) end,
  list = function(ctx, way) return guardian.fs.list(away(ctx, way, "")) end,
  exists = function(ctx, way) return guardian.fs.exists(away(ctx, way, "secret.txt")) end,
  stat = function(ctx, way) return guardian.fs.stat(away(ctx, way, "secret.txt")) end,
  check_yaml = function(ctx, way) return guardian.fs.check_yaml(away(ctx, way, "secret.txt")) end,
  disk_usage = function(ctx, way) return guardian.disk.usage(away(ctx, way, "")) end,
  disk_files = function(ctx, way) return guardian.disk.files(away(ctx, way, "")) end,
  disk_gzip = function(ctx, way) return guardian.disk.gzip(away(ctx, way, "secret.txt")) end,
  disk_move = function(ctx, way)
    return guardian.disk.move(away(ctx, way, "secret.txt"), dir(ctx) .. "/stolen")
  end,
  sqlite_check = function(ctx, way) return guardian.sqlite.check(away(ctx, way, "secret.txt")) end,
  sqlite_backup = function(ctx, way) return guardian.sqlite.backup(away(ctx, way, "secret.txt")) end,
}

-- What a call answered, as text (a table's names and values, one level deep).
local function show(v)
  if type(v) ~= "table" then return tostring(v) end
  local parts = {}
  for k, x in pairs(v) do
    parts[#parts + 1] = tostring(k) .. "=" .. (type(x) == "table" and show(x) or tostring(x))
  end
  table.sort(parts)
  return "{" .. table.concat(parts, ", ") .. "}"
end

return {
  name = "hostile_fs",
  mode = "missing_config",
  description = "path escapes through every host call that takes a path, one per check",
  retries = 0,
  remediate = function(ctx)
    local call, way = ctx.check:match("^(.+)%-(%a+)$")
    if calls[call] == nil then error("no call named " .. tostring(call)) end
    local a, b = calls[call](ctx, way)
    error("NOT REFUSED: " .. call .. " answered " .. show(a) .. ", " .. show(b))
  end,
}
