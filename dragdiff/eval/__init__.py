"""Evaluation: DragBench-Shapes (ground truth known) and, later, DragBench."""
