"""Actions: one module per outside service, registered by key (see integrations.registry)."""
