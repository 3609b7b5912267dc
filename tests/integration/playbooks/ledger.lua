-- Test-only playbook (tests/integration/test_crash_consistency.py): missing_config with a
-- remediation that is not idempotent. Each remediate appends "+INCIDENT" to ledger.txt beside
-- the watched file and each rollback that finds its incident's remediation applied appends
-- "-INCIDENT", so the ledger shows whether a remediation was ever applied twice without a
-- rollback between. Attempt 1 writes a file that still fails, so verify fails and rollback
-- runs; attempt 2 restores the newest kept copy. Every phase acts at least twice, so a crash
-- point can fall between its host calls.
local P = {
  name = "ledger",
  mode = "missing_config",
  description = "a non-idempotent remediation with a ledger (crash-consistency tests)",
  timeout = 15000,
  retries = 4,
  disruptive = false,
}

local function ledger_path(ctx) return ctx.params.path:match("^(.*)/") .. "/ledger.txt" end

local function ledger(ctx)
  local p = ledger_path(ctx)
  if not guardian.fs.exists(p) then return "" end
  return assert(guardian.fs.read(p))
end

-- Remediations of this incident applied and not taken back.
local function applied(text, incident)
  local n = 0
  for sign, id in text:gmatch("([+-])(%d+)\n") do
    if tonumber(id) == incident then n = n + (sign == "+" and 1 or -1) end
  end
  return n
end

function P.backup(ctx)
  local dir = ctx.state_dir .. "/aside"
  assert(guardian.fs.mkdir(dir))
  assert(guardian.fs.write(dir .. "/note-" .. ctx.incident .. "-" .. ctx.attempt .. ".txt",
                           "attempt " .. ctx.attempt .. "\n"))
  return "noted attempt " .. ctx.attempt
end

function P.remediate(ctx)
  assert(guardian.fs.write(ledger_path(ctx), ledger(ctx) .. "+" .. ctx.incident .. "\n"))
  if ctx.attempt == 1 then
    assert(guardian.fs.write(ctx.params.path, "still: [broken\n"))
    return "applied; attempt 1 leaves the file broken"
  end
  local versions = guardian.state.versions()
  if #versions == 0 then error("no kept version to restore") end
  assert(guardian.fs.copy(versions[1], ctx.params.path))
  return "applied and restored " .. versions[1]
end

function P.verify(ctx)
  guardian.sleep(1)
  local ok, why = guardian.fs.check_yaml(ctx.params.path, ctx.params.required_keys)
  if not ok then error("does not validate: " .. why) end
  guardian.sleep(1)
  return "validates"
end

function P.rollback(ctx)
  guardian.sleep(1)
  local text = ledger(ctx)
  if applied(text, ctx.incident) <= 0 then return "nothing applied to take back" end
  assert(guardian.fs.write(ledger_path(ctx), text .. "-" .. ctx.incident .. "\n"))
  return "took the remediation back"
end

return P
