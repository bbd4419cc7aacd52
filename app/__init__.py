"""Doppel: duplicate-image detection over HTTP."""
