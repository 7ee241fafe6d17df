"""Small helpers shared by every package (no torch at import time)."""
