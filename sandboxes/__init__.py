"""Local reference implementations ("test mode") of the registry and exchange APIs."""
