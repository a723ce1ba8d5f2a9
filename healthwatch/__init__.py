"""fedns healthwatch package."""
