"""Package data: the bundled network library (*.arch) and its standard blocks (std/)."""
