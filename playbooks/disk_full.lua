-- disk_full: a filesystem the stack writes to is short of space or inodes, or the app met ENOSPC.
--   backup    start an empty record of moves for this incident (the manifest)
--   remediate cheapest first, stopping as soon as every filesystem is over its floors again:
--             1. clear temp files (tmp_dirs);
--             2. prune snapshots, keeping the newest keep_snapshots;
--             3. rotate the logs still being written (the app is told to reopen them: SIGHUP)
--                and gzip every rotated log; when even that has no room, take away the oldest
--                rotated logs beyond keep_logs first (logrotate's way), then compress the rest;
--             4. move compressed logs out, oldest first (only with a reserve_dir).
--             With a reserve_dir (another filesystem) what steps 1 to 4 take away is moved
--             there and each move recorded, so rollback can put it back; without one, temp
--             files and pruned snapshots are deleted (and the incident says how many).
--   verify    every filesystem is over its floors; the app (if any) is ready
--   rollback  move back everything this incident moved to the reserve
local P = {
  name = "disk_full",
  mode = "disk_full",
  description = "clear temp files, prune old snapshots, rotate and compress logs, within floors",
  timeout = 40000,
  retries = 1,
  disruptive = true,
}

local MIB = 1024 * 1024

local function mib(bytes) return string.format("%.1f MiB", bytes / MIB) end

local function watched(ctx)
  local out = {ctx.params.path}
  for _, p in ipairs(ctx.params.paths or {}) do out[#out + 1] = p end
  return out
end

-- nil when every watched filesystem is over its floors, else what is short ("path: 2.1% free").
local function short(ctx)
  local p = ctx.params
  local min_pct = p.min_free_percent or 10
  local min_bytes = (p.min_free_mb or 0) * MIB
  local min_inodes = p.min_free_inodes_percent or 5
  for _, path in ipairs(watched(ctx)) do
    local u, err = guardian.disk.usage(path)
    if not u then return path .. ": " .. err end  -- not known to be fine is not fine
    if u.free_percent < min_pct or u.free_bytes < min_bytes
        or (u.total_inodes > 0 and u.free_inodes_percent < min_inodes) then
      return string.format("%s: %s free (%.1f%%), %.1f%% inodes free", path, mib(u.free_bytes),
                           u.free_percent, u.free_inodes_percent)
    end
  end
  return nil
end

local function free_bytes(ctx)
  local u = guardian.disk.usage(ctx.params.path)
  return u and u.free_bytes or 0
end

local function manifest_path(ctx) return ctx.state_dir .. "/moves-incident-" .. ctx.incident .. ".txt" end

-- Moves a file to the reserve (recorded in the manifest first: a crash in between leaves a
-- record that rollback skips when nothing was moved), or deletes it without a reserve.
local function take_away(ctx, file, moves)
  local reserve = ctx.params.reserve_dir
  if not reserve then
    assert(guardian.fs.remove(file.path))
    return "deleted"
  end
  local dest = reserve .. "/incident-" .. ctx.incident .. "/" .. file.name
  moves[#moves + 1] = file.path .. "\t" .. dest
  assert(guardian.fs.write(manifest_path(ctx), table.concat(moves, "\n") .. "\n"))
  local ok, err = guardian.disk.move(file.path, dest)
  if not ok then error("moving " .. file.path .. " to the reserve failed: " .. err) end
  return "moved"
end

-- Takes away the regular files of `dir` that `wanted(name)` accepts, oldest first, all but the
-- newest `keep`; with `until_enough`, stops once no filesystem is short. Returns n, bytes, how.
local function prune(ctx, dir, keep, wanted, moves, until_enough)
  local files = {}
  for _, f in ipairs(guardian.disk.files(dir) or {}) do
    if f.regular and wanted(f.name) then files[#files + 1] = f end
  end
  local n, bytes, how = 0, 0, nil
  for i = 1, #files - keep do
    how = take_away(ctx, files[i], moves)
    n, bytes = n + 1, bytes + files[i].size
    if until_enough and not short(ctx) then break end
  end
  return n, bytes, how
end

local function is_active_log(ctx, name)
  local active = ctx.params.active_logs
  if active then
    for _, a in ipairs(active) do if a == name then return true end end
    return false
  end
  return name:match("%.log$") ~= nil
end

function P.backup(ctx)
  if ctx.params.reserve_dir then
    assert(guardian.fs.mkdir(ctx.params.reserve_dir .. "/incident-" .. ctx.incident))
  end
  assert(guardian.fs.write(manifest_path(ctx), ""))
  local why = short(ctx)
  return (why or "every watched filesystem is over its floors now") ..
         (ctx.params.reserve_dir and "; reserve " .. ctx.params.reserve_dir or "; no reserve: pruned files are deleted")
end

function P.remediate(ctx)
  local p = ctx.params
  local start = free_bytes(ctx)
  local moves, done = {}, {}
  local function finished()
    if short(ctx) then return nil end
    return table.concat(done, "; ") .. "; freed " .. mib(free_bytes(ctx) - start) ..
           " (" .. (short(ctx) or "every filesystem over its floors") .. ")"
  end

  -- 1. temp files
  local n, bytes, how = 0, 0, nil
  for _, dir in ipairs(p.tmp_dirs or {}) do
    for _, f in ipairs(guardian.disk.files(dir) or {}) do
      if f.regular then
        how = take_away(ctx, f, moves)
        n, bytes = n + 1, bytes + f.size
      end
    end
  end
  if n > 0 then done[#done + 1] = how .. " " .. n .. " temp files (" .. mib(bytes) .. ")" end
  local result = finished()
  if result then return result end

  -- 2. old snapshots
  if p.snapshot_dir then
    local keep = p.keep_snapshots or 3
    n, bytes, how = prune(ctx, p.snapshot_dir, keep, function() return true end, moves, false)
    if n > 0 then
      done[#done + 1] = how .. " " .. n .. " old snapshots (" .. mib(bytes) .. "), kept the newest " .. keep
    end
    result = finished()
    if result then return result end
  end

  -- 3. rotate and compress logs; when even compressing has no room, drop the oldest rotated
  --    logs beyond keep_logs (logrotate's way), then compress what is left
  if p.log_dir then
    local rotated = 0
    local stamp = tostring(guardian.now())
    for _, f in ipairs(guardian.disk.files(p.log_dir) or {}) do
      if f.regular and is_active_log(ctx, f.name) and f.size > 0 then
        assert(guardian.disk.move(f.path, f.path .. "." .. stamp))
        rotated = rotated + 1
      end
    end
    if rotated > 0 and p.service then guardian.service.signal("HUP") end  -- reopen the logs
    if rotated > 0 then done[#done + 1] = "rotated " .. rotated .. " logs" end
    local before, after, count = 0, 0, 0
    local function compress_all()
      local failed = nil
      for _, f in ipairs(guardian.disk.files(p.log_dir) or {}) do
        if f.regular and not is_active_log(ctx, f.name) and not f.name:match("%.gz$") then
          local z, err = guardian.disk.gzip(f.path)
          if z then
            before, after, count = before + z.bytes_before, after + z.bytes_after, count + 1
          else
            failed = err
          end
        end
      end
      return failed
    end
    local failed = compress_all()
    if failed and short(ctx) then
      local keep = p.keep_logs or 2
      n, bytes, how = prune(ctx, p.log_dir, keep,
                            function(name) return not is_active_log(ctx, name) end, moves, true)
      if n > 0 then
        done[#done + 1] = how .. " " .. n .. " old logs (" .. mib(bytes) .. ") to make room, kept the newest " .. keep
      end
      failed = compress_all()
    end
    if count > 0 then
      done[#done + 1] = "compressed " .. count .. " logs (" .. mib(before) .. " -> " .. mib(after) .. ")"
    end
    if failed then done[#done + 1] = "a log could not be compressed: " .. failed end
    result = finished()
    if result then return result end

    -- 4. compressed logs out to the reserve, oldest first
    if p.reserve_dir then
      n, bytes = prune(ctx, p.log_dir, 0, function(name) return name:match("%.gz$") end, moves, true)
      if n > 0 then done[#done + 1] = "moved " .. n .. " compressed logs (" .. mib(bytes) .. ") to the reserve" end
      result = finished()
      if result then return result end
    end
  end
  error("still short after " .. (#done > 0 and table.concat(done, "; ") or "nothing to free") ..
        ": " .. short(ctx))
end

function P.verify(ctx)
  local why = short(ctx)
  if why then error("still short: " .. why) end
  if ctx.params.service then
    local info = guardian.service.info()
    if info.state ~= "ready" then error(info.name .. " is " .. info.state .. ", not ready") end
  end
  return "every watched filesystem is over its floors; " .. mib(free_bytes(ctx)) .. " free at " .. ctx.params.path
end

function P.rollback(ctx)
  local text = guardian.fs.read(manifest_path(ctx))
  if not text or text == "" then return "nothing was moved by this incident" end
  local back = 0
  for line in text:gmatch("[^\n]+") do
    local from, to = line:match("^(.-)\t(.*)$")
    if from and guardian.fs.exists(to) and not guardian.fs.exists(from) then
      assert(guardian.disk.move(to, from))
      back = back + 1
    end
  end
  return "moved " .. back .. " files back from the reserve"
end

return P
