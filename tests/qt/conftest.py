"""Qt tests run offscreen with settings and caches in temporary folders."""
import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
