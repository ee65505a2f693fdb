"""Runnable examples of docket-nats patterns (see README and demo.py)."""
