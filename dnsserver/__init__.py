"""fedns dnsserver package."""
