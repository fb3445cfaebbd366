"""A fork family for the tests: a trainer written like a real project, and forks that each change one thing."""
