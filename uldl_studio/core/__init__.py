"""Qt-free core: datasets, LDLVA engine, runs, edits, exports."""
