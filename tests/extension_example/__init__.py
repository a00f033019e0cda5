"""A package of one extension of each kind, added as ``docs/extending.md`` says (used by ``tests/test_extending.py``).

Each module is what a user writes; the registry line that declares it is in the test.
"""
