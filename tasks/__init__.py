"""Task suites (data and graders), one folder per domain."""
