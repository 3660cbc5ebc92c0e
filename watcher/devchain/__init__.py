"""Local chains with real protocol contracts, for the demo, the tests and the benchmarks."""
