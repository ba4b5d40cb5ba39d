"""Measured tables (one module per table), the shared table and statistics helpers (`tables`), the registry the
CLI dispatches on (`registry.TABLES`) and the offline showcase (`demo`). Each table prints markdown and returns
its rows; see data/README.md for the measured numbers."""
