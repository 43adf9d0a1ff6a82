"""Plugins used only by tests, named by import path (``tests.plugins.crashing:CrashingRunner``)."""
