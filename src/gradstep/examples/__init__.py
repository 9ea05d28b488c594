"""Small runnable examples: ``python -m gradstep.examples.quadratic``."""
