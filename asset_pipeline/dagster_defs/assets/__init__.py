"""One module per asset group; the module name is the group name."""
