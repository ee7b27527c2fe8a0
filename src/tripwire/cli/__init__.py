"""The command-line surface: thin wrappers that parse flags and call the library."""
