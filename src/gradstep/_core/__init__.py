"""The core: trees, the transform protocol, elementwise stages, combinators,
validation and the registry. It imports nothing else of gradstep."""
