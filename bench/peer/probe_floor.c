// The cheapest client that makes the same network probes as a watchdog's idle configuration:
// the CPU floor of those probes on this machine, to set beside the watchdog's idle CPU.
//
// Every HTTP_MS it sends a GET to each HTTP port, back to back (one wake-up for all of them);
// every second it connects to CONNECT_PORT CONNECTS times in a burst and closes each at once.
// Blocking sockets, no timeouts, no parsing: nothing a real watchdog could do with less.
// After one second of warm-up it prints, as JSON, its own CPU time over SECONDS of wall time.
//
// usage: probe_floor SECONDS HTTP_MS CONNECT_PORT CONNECTS HTTP_PORT...
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double cpu_s(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec +
         (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static void sleep_until(double t) {
  struct timespec ts = {(time_t)t, (long)((t - (time_t)t) * 1e9)};
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) != 0) {
  }
}

static struct sockaddr_in loopback(int port) {
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_port = htons((unsigned short)port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}

// Returns 0 when the port answered (HTTP: anything read before the server closed).
static int probe(int port, int http) {
  static const char kRequest[] = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
  struct sockaddr_in a = loopback(port);
  int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s < 0) return -1;
  int rc = connect(s, (struct sockaddr*)&a, sizeof a);
  if (rc == 0 && http) {
    char buf[16384];
    ssize_t n = write(s, kRequest, sizeof kRequest - 1);
    rc = -1;  // answered only once something is read
    if (n == (ssize_t)(sizeof kRequest - 1))
      while ((n = read(s, buf, sizeof buf)) > 0) rc = 0;
  }
  close(s);
  return rc;
}

int main(int argc, char** argv) {
  if (argc < 5) {
    fprintf(stderr, "usage: probe_floor SECONDS HTTP_MS CONNECT_PORT CONNECTS HTTP_PORT...\n");
    return 2;
  }
  double seconds = atof(argv[1]);
  double http_s = atof(argv[2]) / 1000.0;
  int connect_port = atoi(argv[3]);
  int connects = atoi(argv[4]);
  int nhttp = argc - 5;
  if (seconds <= 0 || http_s <= 0 || connects < 0) {
    fprintf(stderr, "probe_floor: SECONDS and HTTP_MS must be positive, CONNECTS not negative\n");
    return 2;
  }
  long failed = 0, http_probes = 0, connect_probes = 0;
  double start = now_s() + 1.0;  // warm-up: the first second is not counted
  double next_http = now_s(), next_connect = now_s();
  double c0 = -1, t0 = 0;
  for (;;) {
    double t = next_http < next_connect ? next_http : next_connect;
    if (c0 < 0 && t >= start) {
      c0 = cpu_s();
      t0 = now_s();
      http_probes = connect_probes = failed = 0;
    }
    if (c0 >= 0 && t >= t0 + seconds) break;
    sleep_until(t);
    if (t == next_http) {
      for (int i = 0; i < nhttp; i++) failed += probe(atoi(argv[5 + i]), 1) != 0;
      http_probes += nhttp;
      next_http += http_s;
    }
    if (t == next_connect) {
      for (int i = 0; i < connects; i++) failed += probe(connect_port, 0) != 0;
      connect_probes += connects;
      next_connect += 1.0;
    }
  }
  double cpu = cpu_s() - c0, wall = now_s() - t0;
  printf(
      "{\"wall_s\": %.3f, \"cpu_s\": %.4f, \"cpu_pct_of_one_core\": %.4f, \"http_probes\": %ld, "
      "\"connect_probes\": %ld, \"failed\": %ld}\n",
      wall, cpu, 100.0 * cpu / wall, http_probes, connect_probes, failed);
  return failed ? 1 : 0;
}
