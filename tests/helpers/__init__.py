"""What the tests share: the lifecycle driver, waiting on time rather than attempts, named
scenarios and the canned systems of the fast workflow layer.

Importable as `helpers` (pytest puts tests/ on sys.path: tests/ is not a package).
"""
