"""Activities: the registry and exchange clients, and projections to PostgreSQL."""
