"""Benchmarks: measured figures for the issue targets, each printing one table from one run.

The scripts (`python -m bench.<name>`): decisions, scale, http, propagation, soak, authzen, and
floor (the constant-JSON server http compares against). The harness under them: store
(temporary stores of generated tenants), server (real server processes), wrk (load), timing
(in-process timing), admin_form (a policy change through the admin form), cli (arguments,
progress, main) and table (the printed table). internals is the one module that imports the
service's internals.
"""
