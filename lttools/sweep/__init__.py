"""`lttools sweep`: a grid of `-S` overrides run as DVC experiments on a cluster through
submitit (Slurm; its local executor on one machine), each point in its own clone with a shared
DVC cache, pushed back to the user's repository as an experiment."""
