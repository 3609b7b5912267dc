// guardiand: the Guardian daemon.
#include <CLI/CLI.hpp>
#include <iostream>

#include "daemon/daemon.h"
#include "daemon/logging.h"

int main(int argc, char** argv) {
  CLI::App app{"guardiand: self-healing watchdog daemon"};
  std::string config;
  std::string check;
  auto* run_opt =
      app.add_option("--config", config, "run with this config file")->check(CLI::ExistingFile);
  auto* check_opt =
      app.add_option("--check-config", check, "validate a config file and exit (0 ok, 2 errors)");
  run_opt->excludes(check_opt);
  app.set_version_flag("--version", "guardiand " GUARDIAN_VERSION);
  CLI11_PARSE(app, argc, argv);

  guardian::SetupLogging();
  if (!check.empty()) {
    return guardian::CheckConfigCommand(check);
  }
  if (config.empty()) {
    std::cerr << "guardiand: --config FILE is required (or --check-config FILE)\n";
    return 2;
  }
  return guardian::Daemon(config).Run();
}
