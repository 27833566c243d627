"""What a run shows in TensorBoard: the ``TensorBoard`` callback and the ``TrainingLog`` writer."""
