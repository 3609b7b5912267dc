"""chaos/run's parts: the Guardian API client (api), the stack it breaks (stack), what each mode's
fault is (faults), the steady-state hypothesis (steady), one experiment (experiment) and what a
run reports (report)."""
