"""Entry points: the ``datalab`` command, the demo, the local lab runner and the benchmarks runner.

The top layer of the house: it may import the hub, the node, the recipes, the synthetic city and
the shared base; nothing imports it (``.importlinter`` keeps it so). A command's module is
imported only when that command runs, so a node agent never loads the hub's server stack.
"""
