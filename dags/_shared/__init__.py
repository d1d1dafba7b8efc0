"""Definitions shared by the DAG files (Assets, default_args). Light imports only: parsed with every DAG."""
