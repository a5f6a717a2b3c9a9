"""What is done with a trained run: prediction, export, evaluation, shift correction."""
