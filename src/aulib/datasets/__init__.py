"""Readers for the training datasets (CK+48, FER+) with subject-wise splits."""
