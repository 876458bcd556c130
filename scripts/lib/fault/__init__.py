"""The database fault test of contacts-api (scripts/fault-test runs scripts/fault_test.py).

common: the cluster, the HTTP client, failures; workload: the writers and readers with the
model of what every acknowledged write must have left; exports: slow mid-stream exports;
lifecycle: exit status checks; report: the analysis of the answers by outage window.
"""
