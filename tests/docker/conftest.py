"""Docker tests' shared helpers: this folder is on the import path for its test modules
(`import recycling`)."""
