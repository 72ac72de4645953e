"""Pipeline stages: each a function from artifacts in the job to artifacts out."""
