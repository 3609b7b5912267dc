-- db_corruption: a SQLite database fails its check, cannot be read, or its app reports corruption.
--   backup    copy the database, its -wal and -shm aside (the state as found, for rollback)
--   remediate checkpoint and have the app reopen it (unless SQLite cannot read the file at all);
--             if the database still fails its check,
--             restore the newest verified backup and have the app reopen it, reporting the
--             backup's age: what was written after it may be lost
--   verify    integrity_check passes and the app (when there is one) reads it again
--   rollback  put the copies kept by backup back and have the app reopen them
local P = {
  name = "db_corruption",
  mode = "db_corruption",
  description = "checkpoint and reopen a corrupt SQLite database, else restore its newest verified backup",
  timeout = 20000,
  retries = 1,
  disruptive = true,
}

local SUFFIXES = {"", "-wal", "-shm"}

-- Tells the owning app to reopen the database (the demo app does on SIGHUP) and waits until it
-- reports the database healthy again, up to 3 s. Without a service there is nothing to tell.
-- An app that is down or still starting (it may have crashed on the bad file) is waited for
-- first: a signal needs a process, and its new boot may have read the file before the repair.
local function reopen(ctx)
  if not ctx.params.service then return true end
  if guardian.service.info().state ~= "ready" then
    local ready, why = guardian.service.wait_ready(10000)
    if not ready then return nil, why end
  end
  local ok, err = guardian.service.signal("HUP")
  if not ok then return nil, err end
  for _ = 1, 60 do
    local st = guardian.service.status()
    if st and st.db and st.db.ok and (st.db.rows or 0) >= 0 then return true end
    guardian.sleep(50)
  end
  return nil, "the app did not report the database ok within 3 s"
end

function P.backup(ctx)
  local dir = ctx.state_dir .. "/aside/incident-" .. ctx.incident .. "-attempt-" .. ctx.attempt
  assert(guardian.fs.mkdir(dir))
  local kept = {}
  for _, suffix in ipairs(SUFFIXES) do
    local file = ctx.params.path .. suffix
    if guardian.fs.exists(file) then
      assert(guardian.fs.copy(file, dir .. "/db" .. suffix))
      kept[#kept + 1] = "db" .. suffix
    end
  end
  guardian.state.set("aside", ctx.incident .. "|" .. dir)
  return "kept " .. (#kept > 0 and table.concat(kept, ", ") or "nothing (no files)") .. " in " .. dir
end

function P.remediate(ctx)
  local db = ctx.params.path
  local _, first = guardian.sqlite.check(db)
  -- A file SQLite cannot even read (zeroed header, gone) is not something a checkpoint mends.
  local unreadable = first:match("^SQLITE_NOTADB") or first:match("^SQLITE_CANTOPEN")
  if not unreadable then
    guardian.sqlite.checkpoint(db)
    reopen(ctx)
    if guardian.sqlite.check(db, {full = true}) then
      return "checkpoint and reopen healed it (was: " .. first .. ")"
    end
  end

  local newest = guardian.sqlite.backups()[1]
  if not newest then error(db .. " is corrupt (" .. first .. ") and there is no verified backup") end
  local restored, err = guardian.sqlite.restore(newest.path, db)
  if not restored then error("restoring " .. newest.path .. " failed: " .. err) end
  local reopened, why = reopen(ctx)
  if not reopened then error("restored " .. newest.path .. ", but " .. why) end
  local age = math.floor(newest.age_ms / 1000)
  return "restored verified backup " .. newest.path .. " taken " .. age .. " s before the restore (was: "
         .. first .. "); writes made after it may be lost"
end

function P.verify(ctx)
  local ok, why = guardian.sqlite.check(ctx.params.path, {full = true})
  if not ok then error("still failing integrity_check: " .. why) end
  if ctx.params.service then
    local st = guardian.service.status()
    if not (st and st.db and st.db.ok) then error("the app does not read the database yet") end
    return "integrity_check ok; the app reads " .. tostring(st.db.rows) .. " rows"
  end
  return "integrity_check ok"
end

function P.rollback(ctx)
  local recorded = guardian.state.get("aside") or ""
  local incident, dir = recorded:match("^(%d+)|(.*)$")
  if tonumber(incident) ~= ctx.incident then return "nothing kept by this incident to roll back" end
  for _, suffix in ipairs(SUFFIXES) do
    local kept = dir .. "/db" .. suffix
    if guardian.fs.exists(kept) then
      assert(guardian.fs.copy(kept, ctx.params.path .. suffix))
    elseif guardian.fs.exists(ctx.params.path .. suffix) then
      assert(guardian.fs.remove(ctx.params.path .. suffix))
    end
  end
  reopen(ctx)
  return "put the database back as found, from " .. dir
end

return P
