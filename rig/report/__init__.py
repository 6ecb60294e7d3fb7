"""What a run leaves for people: margins and the traceability matrix."""
