"""ngf's learning machinery: the rule interface and its checks, the network as a graph of nodes, the task
losses, feedback, initialisation, the training step and the jitted engine, stacked runs, data parallelism
and multi-process runs, alignment with backprop, and ngf's exception types."""
