// guardiand: the Guardian daemon.
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <iostream>

#include "daemon/daemon.h"
#include "plugins/playbook_library.h"

int main(int argc, char** argv) {
  CLI::App app{"guardiand: self-healing watchdog daemon"};
  std::string config;
  std::string check;
  auto* run_opt =
      app.add_option("--config", config, "run with this config file")->check(CLI::ExistingFile);
  auto* check_opt =
      app.add_option("--check-config", check, "validate a config file and exit (0 ok, 2 errors)");
  run_opt->excludes(check_opt);
  app.set_version_flag("--version", "guardiand 0.1.0");
  CLI11_PARSE(app, argc, argv);

  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
  if (!check.empty()) {
    guardian::PlaybookLibrary playbooks(guardian::PlaybookLimits{});
    std::vector<std::string> pb_errors;
    guardian::ConfigLoad load = guardian::LoadAndValidate(check, &playbooks, &pb_errors);
    for (const auto& e : load.errors) std::cerr << e.ToString() << "\n";
    for (const auto& e : pb_errors) std::cerr << e << "\n";
    if (!load.ok() || !pb_errors.empty()) return 2;
    std::cout << check << ": ok (" << load.config->checks.size() << " checks, "
              << playbooks.Names().size() << " playbooks)\n";
    return 0;
  }
  if (config.empty()) {
    std::cerr << "guardiand: --config FILE is required (or --check-config FILE)\n";
    return 2;
  }
  return guardian::Daemon(config).Run();
}
