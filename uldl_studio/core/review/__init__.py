"""The annotator's session over a run: selection, review queue, label health."""
