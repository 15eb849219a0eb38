"""`lttools compare`: results across commits, branches, tags and DVC experiments."""
