"""scf10 task."""
