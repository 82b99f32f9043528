"""Runnable entry points that are not part of the installed package."""
