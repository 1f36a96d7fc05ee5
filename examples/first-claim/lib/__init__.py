"""This project's own helpers. The suite installs as `attnclaims`, so this `lib` is never shadowed."""
