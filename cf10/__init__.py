"""cf10 task."""
