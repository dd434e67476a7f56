"""Load runs: signalling (many consultations on one server) and HTTP (records and consultation API).

``python -m tests.load signalling|http [--long]`` runs them and prints the figures;
tests/load/test_load_short.py runs the short versions in CI. See docs/operations.md "Load".
"""
