"""Workarounds for bugs in the libraries keras-mtl runs on, one module each.

Every workaround is guarded by the version range it was tested with and has a
test that fails once upstream no longer needs it.
"""
