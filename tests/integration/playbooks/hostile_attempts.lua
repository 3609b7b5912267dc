-- Test-only hostile playbook (tests/integration/test_hostile_playbooks.py, HostileAttemptsTest):
-- each check that uses it makes the attempt its check id names, against the Lua environment,
-- the instruction budget and memory cap, or processes. Every attempt must fail the step with a
-- message naming what stopped it; reaching the end of remediate means it got through. Nothing
-- here is destructive if it did: the targets are /etc/guardian-pwned (the test checks it is
-- absent), marker files in the check's own folder, and processes the test checks are alive.
-- (Path escapes are hostile_fs.lua.)
local PWNED = "/etc/guardian-pwned"

local function dir(ctx) return (ctx.params.path:match("^(.*)/[^/]*$")) end

-- stop_stale on the process in the check's folder's `target` file ("PID START_TICKS", which
-- the test wrote), or on the service itself.
local function stop(ctx, itself)
  local pid, ticks
  if itself then
    local info = guardian.service.info()
    pid, ticks = info.pid, info.start_ticks
  else
    local text = assert(guardian.fs.read(dir(ctx) .. "/target"))
    pid, ticks = text:match("^(%d+) (%d+)")
  end
  local ok, why = guardian.service.stop_stale(math.tointeger(pid), math.tointeger(ticks),
                                              {grace_ms = 100})
  error("stop_stale answered " .. tostring(ok) .. ", " .. tostring(why))
end

local attempts = {
  -- THE LUA ENVIRONMENT
  -- os: only time, clock and date.
  ["os-execute"] = function() os.execute("touch " .. PWNED) end,
  ["os-remove"] = function(ctx) os.remove(ctx.params.path) end,
  ["os-exit"] = function() os.exit(1) end,
  -- io, directly, through _G, and io.popen (a shell).
  ["io-open"] = function() io.open(PWNED, "w"):write("x") end,
  ["io-popen"] = function() io.popen("touch " .. PWNED) end,
  ["io-via-g"] = function() _G["i" .. "o"].open(PWNED, "w") end,
  -- debug: the registry, or taking the budget's hook away.
  ["debug-registry"] = function() debug.getregistry() end,
  ["debug-sethook"] = function() debug.sethook() while true do end end,
  -- Modules and native code.
  ["require"] = function() require("io").open(PWNED, "w") end,
  ["package-loadlib"] = function() package.loadlib("libc.so.6", "system")("touch " .. PWNED) end,
  -- Bytecode: evil.luac in the check's folder is real Lua 5.4 bytecode the test compiled.
  ["load-bytecode"] = function(ctx)
    local chunk = assert(guardian.fs.read(dir(ctx) .. "/evil.luac"))
    load(chunk, "evil", "b")()
  end,
  ["dofile-bytecode"] = function(ctx) dofile(dir(ctx) .. "/evil.luac") end,
  ["string-dump"] = function() return string.dump(function() end) end,
  -- The string metatable, and the host's tables.
  ["string-metatable"] = function() getmetatable("").__index = {rep = function() end} end,
  ["rawset-host"] = function() rawset(guardian.fs, "write", function() return true end) end,
  ["host-table-write"] = function() guardian.fs.write = function() return true end end,
  ["host-metatable"] = function() setmetatable(guardian.proc, {__index = function() end}) end,
  ["host-through-g"] = function() _G.guardian.fs.write = nil end,
  -- Coroutines (a loop inside coroutine.wrap would run on a thread of its own), finalizers
  -- (run with hooks off), and the collector.
  ["coroutine-wrap"] = function() coroutine.wrap(function() while true do end end)() end,
  ["gc-finalizer"] = function() setmetatable({}, {__gc = function() while true do end end}) end,
  ["collectgarbage"] = function() collectgarbage("stop") end,

  -- THE INSTRUCTION BUDGET AND THE MEMORY CAP (the daemon's defaults: 10M, 32 MiB)
  -- pcall, xpcall and error handlers cannot swallow the budget's error.
  ["loop-in-pcall"] = function()
    while true do pcall(function() while true do end end) end
  end,
  ["xpcall-handler"] = function()
    xpcall(function() while true do end end, function() while true do end end)
  end,
  ["error-in-pcall"] = function()
    while true do pcall(error, "again") end
  end,
  -- The phase is a coroutine: waiting yields it back to the loop, which resumes it. The budget
  -- counts every slice, and a pcall around the wait changes nothing.
  ["yield-in-pcall"] = function()
    while true do
      pcall(guardian.sleep, 0)
      for _ = 1, 20000 do end
    end
  end,
  -- Lua called back from C still runs under the hook.
  ["gsub-callback"] = function() ("x"):gsub(".", function() while true do end end) end,
  ["sort-comparator"] = function() table.sort({3, 2, 1}, function() while true do end end) end,
  -- C loops over elements an __index written in C makes up: no instruction runs in them.
  ["concat-virtual"] = function()
    return table.concat(setmetatable({}, {__index = table.concat}), "", 1, 1 << 40)
  end,
  ["sort-virtual"] = function()
    table.sort(setmetatable({}, {__len = function() return (1 << 31) - 2 end,
                                 __index = rawlen, __newindex = print}))
  end,
  -- Patterns: Lua's own matcher backtracks in C for hours on these.
  ["pattern-backtrack"] = function() return ("a"):rep(1e5):find(".-.-.-.-.-.-.-b") end,
  ["pattern-optional"] = function()
    return string.rep("a", 28):match(string.rep("a?", 28) .. string.rep("a", 28))
  end,
  ["pattern-in-pcall"] = function()
    while true do pcall(string.gsub, ("a"):rep(5000), ".-.-b", "") end
  end,
  ["pattern-gmatch"] = function()
    for _ in ("a"):rep(5000):gmatch(".-.-b") do end
  end,
  -- Instructions that compare or scan megabytes without allocating: each counts as one.
  ["slow-compare"] = function()
    local a, b = ("x"):rep(6e6), ("x"):rep(6e6)
    while a == b do end
  end,
  ["slow-scan"] = function()
    local s, n = ("x"):rep(1e7), 0
    while true do n = n + utf8.len(s) end
  end,
  -- Memory bombs: string.rep, tables, table.concat; a caught memory error; and churn that
  -- stays under the cap but builds megabytes per instruction.
  ["memory-rep"] = function() return string.rep("x", 1 << 30) end,
  ["memory-table"] = function()
    local t = {}
    local i = 0
    while true do i = i + 1 t[i] = {i} end
  end,
  ["memory-concat"] = function()
    local parts = {}
    for i = 1, 64 do parts[i] = ("z"):rep(1 << 16) end
    local t = {}
    while true do t[#t + 1] = table.concat(parts) end
  end,
  ["memory-in-pcall"] = function()
    local chunk = ("x"):rep(1 << 16)
    while true do
      pcall(function()
        local t = {}
        while true do t[#t + 1] = chunk .. #t end
      end)
    end
  end,
  ["memory-churn"] = function()
    local s = ("x"):rep(1 << 20)
    while true do local t = s .. s end
  end,

  -- PROCESSES
  -- Each element is one argument, passed as is: no shell sees `;`, `$(...)`, backquotes,
  -- `&&`, `|`, `>` or spaces. printf prints each between brackets.
  ["argv-injection"] = function(ctx)
    local d = dir(ctx)
    local r = assert(guardian.proc.run({"/usr/bin/printf", "[%s]",
      "a; touch " .. d .. "/m1", "$(touch " .. d .. "/m2)", "`touch " .. d .. "/m3`",
      "&& touch " .. d .. "/m4", "| touch " .. d .. "/m5", "> " .. d .. "/m6", "x y"}))
    error("argv stayed literal: " .. r.stdout)
  end,
  -- A whole command line as the program's name is a file name, not a command.
  ["argv-command-line"] = function(ctx)
    local r, why = guardian.proc.run({"/bin/sh -c 'touch " .. dir(ctx) .. "/m7'"})
    error(why or ("ran: code " .. tostring(r.code)))
  end,
  -- A command line as a string is refused: argv only.
  ["shell-string"] = function(ctx) guardian.proc.run("touch " .. dir(ctx) .. "/m8") end,
  -- A shell given its command line as an argument, by path, by name, through a launcher and
  -- through a symlink of another name (the test made `tool` -> /bin/bash in the folder).
  ["shell-argv"] = function(ctx) guardian.proc.run({"/bin/sh", "-c", "touch " .. dir(ctx) .. "/m9"}) end,
  ["shell-by-name"] = function(ctx) guardian.proc.run({"bash", "-c", "touch " .. dir(ctx) .. "/m10"}) end,
  ["shell-through-env"] = function(ctx)
    guardian.proc.run({"/usr/bin/env", "sh", "-c", "touch " .. dir(ctx) .. "/m11"})
  end,
  ["shell-through-symlink"] = function(ctx)
    guardian.proc.run({dir(ctx) .. "/tool", "-c", "touch " .. dir(ctx) .. "/m12"})
  end,
  -- A check whose `programs` lists only printf: any other program is refused, even a harmless
  -- one, and pcall catching the refusal does not let it run.
  ["program-not-listed"] = function(ctx)
    pcall(guardian.proc.run, {"/usr/bin/touch", dir(ctx) .. "/m13"})
    guardian.proc.run({"/usr/bin/touch", dir(ctx) .. "/m13"})
  end,
  -- stop_stale stops only a stale copy of the service's own program: not pid 1, not a
  -- process the test started, not the service.
  ["stop-pid-1"] = function(ctx) stop(ctx, false) end,
  ["stop-foreign"] = function(ctx) stop(ctx, false) end,
  ["stop-service-itself"] = function(ctx) stop(ctx, true) end,
  -- signal takes a name from a short list, and reaches only the service's process.
  ["signal-kill"] = function() guardian.service.signal("KILL") end,
  ["signal-no-service"] = function() guardian.service.signal("TERM") end,
}

return {
  name = "hostile_attempts",
  mode = "missing_config",
  description = "escape and abuse attempts, one per check",
  retries = 0,
  remediate = function(ctx)
    local attempt = attempts[ctx.check]
    if attempt == nil then error("no attempt named " .. ctx.check) end
    attempt(ctx)
    return "ATTEMPT GOT THROUGH: " .. ctx.check
  end,
}
