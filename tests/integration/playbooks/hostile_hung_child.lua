-- Test-only hostile playbook: remediate starts a program that never finishes on its own. The
-- phase deadline (timeout 1500 ms) must stop the phase and kill the program; SIGTERM to the
-- daemon meanwhile must kill it too. The program's argv carries the watched path, so a test
-- can find it in /proc.
return {
  name = "hostile_hung_child",
  mode = "missing_config",
  description = "runs a program that hangs",
  timeout = 1500,
  retries = 0,
  remediate = function(ctx)
    guardian.proc.run({"python3", "-c", "import time; time.sleep(60)", ctx.params.path},
                      {timeout_ms = 120000})
    return "the program finished"
  end,
}
