"""An app module whose import fails: the master must exit 4 instead of respawning it."""

raise RuntimeError("master_broken_app refuses to import")
