"""HTTP gateway through which external systems and people signal state changes."""
