-- invalid_credentials: the bearer token a service uses is refused, missing or about to expire.
-- Tokens and secrets stay inside guardian.credentials (C++): this playbook only sees client ids,
-- expiries, HTTP statuses and OAuth2 error codes, so no step message can carry a secret.
--   backup    note which client the token belongs to and whether the feature is degraded
--             (the token itself is not copied: a secret goes nowhere but its own file)
--   remediate each at most once, never in a loop:
--               1. the token still works (a stale alarm, or new credentials from an operator):
--                  keep it, re-enable the feature if this playbook degraded it
--               2. refresh it through the token endpoint (refresh_token grant)
--               3. switch keys: a client_credentials grant with each other key file in order
--                  (the backup key), then with the token's own key
--               4. nothing works: degrade the feature (the service's flags), alert, and fail, so
--                  the incident escalates; a changed key file lifts the hold at once
--               but when the token endpoint gave no answer at all, nothing was refused: fail
--               without degrading or alerting; the hold lifts as soon as it answers again
--   verify    the authenticated probe accepts the token, and the feature is enabled
--   rollback  re-enable the feature only if the credentials work again ("re-enable after new
--             credentials"); a degraded feature stays degraded while they are refused
local P = {
  name = "invalid_credentials",
  mode = "invalid_credentials",
  description = "refresh the token once, else switch to the backup key, else degrade the feature and alert",
  timeout = 5000,
  retries = 0, -- every way to get a token is tried once per attempt; a retry would be a loop
  disruptive = false,
}

local function feature(ctx) return ctx.params.feature or "quotes" end

-- Whether the feature is degraded, and whether this check did it (its marker).
local function is_degraded(ctx) return (guardian.service.degraded(feature(ctx))) end
local function degraded_by_us(ctx) return select(2, guardian.service.degraded(feature(ctx))) end

local function set_degraded(ctx, on)
  local seq, err = guardian.service.degrade(feature(ctx), on, {wait_ms = 3000})
  if not seq then error("could not change the service's features: " .. err) end
end

-- The probe's verdict on the current token: accepted, and a few words on it.
local function accepted()
  local r = guardian.credentials.probe()
  if r.ok and r.status >= 200 and r.status < 300 then return true, "accepted (" .. r.status .. ")" end
  if r.ok then return false, "refused (" .. r.status .. ")" end
  return false, "not judged (" .. tostring(r.error_kind) .. ")"
end

local function margin_ms(ctx) return (ctx.params.expiry_margin_s or 60) * 1000 end

-- Re-enables the feature when this playbook had degraded it; returns a note for the message.
local function reenable(ctx)
  if not degraded_by_us(ctx) then return "" end
  set_degraded(ctx, false)
  return "; '" .. feature(ctx) .. "' re-enabled"
end

function P.backup(ctx)
  local t = guardian.credentials.token()
  local was = t.present and ("a token of client '" .. t.client_id .. "'") or "no token (" .. t.problem .. ")"
  return "the service had " .. was .. "; '" .. feature(ctx) .. "' " ..
         (is_degraded(ctx) and "degraded" or "enabled")
end

function P.remediate(ctx)
  local t = guardian.credentials.token()
  if t.present and (t.expires_in_ms == nil or t.expires_in_ms > margin_ms(ctx)) then
    local good, what = accepted()
    if good then return "the token of client '" .. t.client_id .. "' is " .. what .. reenable(ctx) end
  end

  local tried, unanswered = {}, 0
  local function failed(msg, kind)
    tried[#tried + 1] = msg
    if kind == "no_answer" then unanswered = unanswered + 1 end
  end
  if t.present and t.has_refresh then
    local ok, msg, kind = guardian.credentials.refresh()
    if ok then return msg .. reenable(ctx) end
    failed(msg, kind)
  end

  -- The other keys first (the backup key), the token's own key last; each once.
  local keys = guardian.credentials.keys()
  local order = {}
  for i, k in ipairs(keys) do
    if not (t.present and k.client_id == t.client_id) then order[#order + 1] = i end
  end
  for i, k in ipairs(keys) do
    if t.present and k.client_id == t.client_id then order[#order + 1] = i end
  end
  for _, i in ipairs(order) do
    local ok, msg, kind = guardian.credentials.grant(i)
    if ok then
      return (#tried > 0 and (table.concat(tried, "; ") .. "; switched keys: ") or "") .. msg .. reenable(ctx)
    end
    failed(msg, kind)
  end

  -- Unreachable is not refused: the credentials may be fine, so nothing is degraded.
  if #tried > 0 and unanswered == #tried then
    error("the token endpoint gave no answer (" .. table.concat(tried, "; ") ..
          "); no credentials were refused, so '" .. feature(ctx) ..
          "' is left as it is; trying again as soon as it answers")
  end

  if not is_degraded(ctx) then set_degraded(ctx, true) end
  guardian.log.error("ALERT: no credentials work for check " .. ctx.check .. "; '" .. feature(ctx) ..
                     "' degraded until new credentials arrive in the key files")
  error("no credentials work (" .. table.concat(tried, "; ") .. "): '" .. feature(ctx) ..
        "' degraded until a key file changes")
end

function P.verify(ctx)
  local good, what = accepted()
  if not good then error("the new token is " .. what) end
  if degraded_by_us(ctx) then error("'" .. feature(ctx) .. "' is still degraded") end
  local t = guardian.credentials.token()
  return "the token of client '" .. t.client_id .. "' is " .. what ..
         (t.expires_in_ms and (", expires in " .. (t.expires_in_ms // 1000) .. " s") or "")
end

function P.rollback(ctx)
  if not degraded_by_us(ctx) then return "'" .. feature(ctx) .. "' is enabled; nothing to undo" end
  local good, what = accepted()
  if good then
    set_degraded(ctx, false)
    return "credentials " .. what .. ": '" .. feature(ctx) .. "' re-enabled"
  end
  return "'" .. feature(ctx) .. "' stays degraded: the credentials are " .. what
end

return P
