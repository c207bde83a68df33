"""hscale: does throughput grow with the number of replicas, and if not, what stops it?"""

__version__ = "0.1.0"
