"""scripts task."""
