-- slow_boot: the service's boot (or one chunk of it) runs past its deadline.
--   backup    record the skip_chunks flag as it was
--   remediate a slow non-critical chunk: restart the service with it skipped (skip_chunks applies
--             to one boot: the flag is put back once the service is ready, so the next boot runs
--             every chunk again), leaving the service degraded until then. A slow critical chunk
--             cannot be skipped: fail, so the engine retries and then escalates.
--   verify    the service is ready
--   rollback  put the flag back as it was
local P = {
  name = "slow_boot",
  mode = "slow_boot",
  description = "restart the app with its slow non-critical boot chunks skipped",
  timeout = 10000,
  retries = 2,
  disruptive = true,
}

local READY_MS = 8000

local function list(t) return "[" .. table.concat(t or {}, ", ") .. "]" end

function P.backup(ctx)
  local before = guardian.service.flags().skip_chunks or {}
  guardian.state.set("skip_before", ctx.incident .. "|" .. table.concat(before, ","))
  return "skip_chunks was " .. list(before)
end

local function before_of(ctx)
  local recorded = guardian.state.get("skip_before") or ""
  local incident, names = recorded:match("^(%d+)|(.*)$")
  if tonumber(incident) ~= ctx.incident then return nil end
  local out = {}
  for name in names:gmatch("[^,]+") do out[#out + 1] = name end
  return out
end

function P.remediate(ctx)
  local st = assert(guardian.service.status())
  if st.state ~= "booting" then return "no longer booting (" .. tostring(st.state) .. "); nothing to do" end
  local limit = ctx.params.chunk_deadline_ms or 1000
  local now = guardian.now()
  local slow, critical = {}, nil
  local slowest, slowest_ms = nil, -1
  for _, c in ipairs(st.boot.chunks or {}) do
    if c.started_at and not c.skipped then
      local ms = (c.ended_at or now) - c.started_at
      if ms >= limit then
        if c.critical then critical = c.name .. " (" .. ms .. " ms)" else slow[#slow + 1] = c.name end
      end
      if not c.critical and ms > slowest_ms then slowest, slowest_ms = c.name, ms end
    end
  end
  if critical then
    error("critical chunk " .. critical .. " is slow and cannot be skipped")
  end
  if #slow == 0 then
    -- Over the boot deadline with no single chunk over its own: skip the slowest non-critical.
    if not slowest then error("boot is slow and every chunk that ran is critical") end
    slow = {slowest}
  end
  local skip = before_of(ctx) or {}
  for _, name in ipairs(slow) do skip[#skip + 1] = name end
  assert(guardian.service.set_flags({skip_chunks = skip}))
  local ok, err = guardian.service.restart({wait_ready_ms = READY_MS, reason = "slow boot"})
  -- One boot only: whatever happened, the next boot runs every chunk again.
  guardian.service.set_flags({skip_chunks = before_of(ctx) or {}})
  if not ok then error("restart with " .. list(slow) .. " skipped failed: " .. err) end
  local after = guardian.service.status()
  local took = after and after.boot and after.boot.ready_at and after.boot.started_at
      and (after.boot.ready_at - after.boot.started_at) or "?"
  return "restarted with " .. list(slow) .. " skipped; ready in " .. took ..
         " ms, degraded until the next boot runs them again"
end

function P.verify(ctx)
  local info = guardian.service.info()
  if info.state ~= "ready" then error(info.name .. " is " .. info.state .. ", not ready") end
  return info.name .. " ready"
end

function P.rollback(ctx)
  local before = before_of(ctx)
  if not before then return "nothing recorded by this incident" end
  assert(guardian.service.set_flags({skip_chunks = before}))
  return "skip_chunks back to " .. list(before)
end

return P
