"""The runtime host agent: leases tenants, runs their runtimes under its own supervisord, reports to Redis."""
