"""Optional plugins shipped with ci-master (the seed APIs and others), enabled in master.cfg."""
