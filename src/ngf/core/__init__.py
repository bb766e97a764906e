"""ngf's engine: the rule interface, the network view, the plugin host, data and runs."""
