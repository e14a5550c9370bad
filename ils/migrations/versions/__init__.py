"""The migration scripts, one per schema revision, oldest first by number."""
