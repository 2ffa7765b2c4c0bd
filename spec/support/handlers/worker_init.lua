-- The workers spec's worker_init module: each worker requires it once at start.
return { ran = true }
