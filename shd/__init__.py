"""shd task."""
