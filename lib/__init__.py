"""attnclaims: claims about transformer internals as pytest files (the checkout's lib/, installed).

Modules: models (loading), hooks, sweep, patching, scores, metrics, stats, claims, ledger, report, cli;
the pytest plugin is attnclaims.fixtures.plugin.
"""
