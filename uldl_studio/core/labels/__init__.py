"""Label math and label records: LDL functions, metrics, soft labels, the edit and vote journals, scores."""
