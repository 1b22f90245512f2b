"""Local HTTP servers that speak model providers' wire protocols, for tests and benchmarks."""
