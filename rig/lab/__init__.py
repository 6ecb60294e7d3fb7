"""Labs with many benches: packrig on a labgrid coordinator's places (see docs/labgrid.md)."""
