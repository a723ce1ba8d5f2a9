"""fedns configuration: ``config.loader.load(path)`` -> ``config.model.Config``."""
