"""The build engine: schedulers, build requests, builders, builds and steps, and the link to workers."""
