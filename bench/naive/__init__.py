"""The naive variant of the cold-start benchmark and the peer: its handler, package builder and template."""
