"""Reading back what a run logged to TensorBoard."""

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def scalars(run_dir, tag: str) -> list[tuple[int, float]]:
    """Every (step, value) logged under ``tag`` in ``run_dir``, in order."""
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    return [(event.step, event.value) for event in events.Scalars(tag)]


def images(run_dir, tag: str = "images/first_layer_weights") -> list:
    """Every image event logged under ``tag`` in ``run_dir``, in order."""
    events = EventAccumulator(str(run_dir), size_guidance={"images": 0})
    events.Reload()
    return events.Images(tag)
