"""Package data: the Lark grammar of the .arch language (arch.lark)."""
