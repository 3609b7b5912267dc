#pragma once
// MetricsRegistry: the daemon's counters, gauges and histograms, rendered as Prometheus text
// exposition format 0.0.4 for a scraper. Written by hand because Debian 12 packages no usable C++
// client library.
//
// Thread: used from one thread only (the daemon's loop thread); there are no locks.
// Errors: a bad metric or label name, an unknown family, a family used as the wrong type or a
// label value count that does not match the family's label names are programming errors and
// throw std::invalid_argument naming the culprit. So is a negative or NaN counter increment.
// Sample values otherwise never throw (a gauge may hold NaN or +-Inf; a NaN observation is
// dropped), so a measurement of a misbehaving system cannot crash the daemon.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace guardian {

// Label values in the order of the family's label names.
using Labels = std::vector<std::string>;

class MetricsRegistry {
 public:
  // Families are declared once, up front. `name` must match [a-zA-Z_:][a-zA-Z0-9_:]*; each label
  // name must match [a-zA-Z_][a-zA-Z0-9_]* and not start with "__" (reserved by Prometheus).
  // Declaring a name twice throws.

  // A counter's name must end in "_total" (the Prometheus convention promtool lints for).
  void AddCounter(const std::string& name, const std::string& help, const Labels& label_names);
  void AddGauge(const std::string& name, const std::string& help, const Labels& label_names);
  // `default_buckets`: upper bounds, finite and strictly increasing; "+Inf" is implied. A
  // histogram may not have a label called "le" (its bucket label).
  void AddHistogram(const std::string& name, const std::string& help, const Labels& label_names,
                    const std::vector<double>& default_buckets);

  // Counter: adds `by`, which must be >= 0 (counters only go up; Inc(..., 0) creates the series
  // at 0 so the first real increment shows up in rate()). Gauge: adds `by`, any sign.
  void Inc(const std::string& name, const Labels& labels, double by = 1);
  // Gauge only.
  void Set(const std::string& name, const Labels& labels, double value);
  // Histogram only. A series created by this call uses `buckets_if_new` when given (validated
  // like default_buckets), else the family's default buckets; for an existing series the
  // argument is ignored, since a series' buckets cannot change under a scraper. NaN is dropped:
  // it falls in no bucket and would make _sum NaN for good.
  void Observe(const std::string& name, const Labels& labels, double value,
               const std::vector<double>* buckets_if_new = nullptr);
  // Drops every series of a gauge family, for gauges rebuilt from current state before each
  // scrape (so a removed check's series disappears instead of going stale).
  void ResetGauge(const std::string& name);

  // Families sorted by name, series sorted by label values, so output is deterministic. Every
  // declared family prints HELP and TYPE, even with no samples.
  std::string Render() const;

 private:
  enum class Kind { kCounter, kGauge, kHistogram };

  struct HistogramSeries {
    std::vector<double> bounds;
    std::vector<uint64_t> counts;  // per bucket, not cumulative; last entry is the +Inf bucket
    double sum = 0;
    uint64_t count = 0;
  };

  struct Family {
    Kind kind;
    std::string help;
    Labels label_names;
    std::vector<double> default_buckets;           // histograms only
    std::map<Labels, double> values;               // counters and gauges
    std::map<Labels, HistogramSeries> histograms;  // histograms
  };

  Family& Declare(const std::string& name, const std::string& help, const Labels& label_names,
                  Kind kind);
  // The family `name`, checked to be of type `kind` (or `or_kind`) and to take labels.size()
  // label values; throws otherwise. `op` names the caller in the message.
  Family& Find(const std::string& name, const Labels& labels, const char* op, Kind kind,
               std::optional<Kind> or_kind = std::nullopt);
  static const char* TypeName(Kind kind);

  std::map<std::string, Family> families_;
};

// Histogram bounds in seconds placed around an MTTR target: target x {0.1, 0.25, 0.5, 0.75, 1,
// 1.5, 2, 3, 5}, sorted and unique, so the target itself is a bucket edge. `target_seconds`
// must be finite and > 0 (config validation guarantees it); otherwise throws
// std::invalid_argument.
std::vector<double> BucketsAroundTarget(double target_seconds);

// Bounds in seconds for sub-second latencies (probes, store jobs, loop lag): 0.5 ms to 10 s.
std::vector<double> LatencyBuckets();

}  // namespace guardian
