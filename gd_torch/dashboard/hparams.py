"""The HPARAMS tab: one experiment definition where runs are grouped, and one session per run.

TensorBoard's HPARAMS tab needs two things. The *experiment* defines the columns: the
hyperparameters (each with a type, a domain, and whether it *differs* between runs) and the
metrics. TensorBoard reads one experiment: when several runs under ``--logdir`` hold one, it
takes the first it finds (``_find_experiment_tag`` in its ``backend_context.py``). Each run's
*session* holds its values and a trial name.

So a group of runs writes its experiment once, at the group's root (a sweep's directory, a
reproduction's), and its runs write only their sessions. A run trained alone writes the
experiment in its own directory; with nothing to compare it with, it marks as differing what
its name shows: the settings it changed from the defaults, its learning rate and its seed.

Only the training settings are hyperparameters (gd_torch.core.settings): the run options never
change what is learned. TensorBoard 2.21 sorts the hyperparameters differing first, then by
name, and shows the first five of them and the first five metrics; the rest can be ticked.
Booleans stay booleans (``torch.utils.tensorboard``'s ``hparams`` writes them as numbers, shown
as 0.0000), and ``hidden_sizes`` is a string such as ``16-16``.

The metrics are the last values of epoch scalars, so the table is filled in while runs train:
``epoch/test_accuracy`` after the last epoch, ``epoch/best_test_accuracy`` (the best epoch),
``epoch/test_cost``, and ``epoch/validation_accuracy`` when a validation set is held out.
"""

import dataclasses
import time

from google.protobuf import struct_pb2
from tensorboard.compat.proto.summary_pb2 import Summary
from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

from gd_torch.core.settings import TrainingSettings, to_dict

METRICS = {  # tag: (display name, description)
    "epoch/test_accuracy": ("test accuracy", "share of the test digits right after the last epoch"),
    "epoch/best_test_accuracy": (
        "best test accuracy",
        "the highest test accuracy of any epoch (what Nielsen's book reports)",
    ),
    "epoch/test_cost": ("test cost", "the cost C over the test digits after the last epoch"),
    "epoch/validation_accuracy": (
        "validation accuracy",
        "share of the held-out validation digits right after the last epoch",
    ),
}
STATUS = {  # how a run ended (Run.outcome) -> its session's status; an interrupted run has none
    # yet: it is resumed
    "finished": api_pb2.STATUS_SUCCESS,
    "stopped": api_pb2.STATUS_SUCCESS,
    "diverged": api_pb2.STATUS_FAILURE,
    "failed": api_pb2.STATUS_FAILURE,
}


def hparam_value(value):
    """A setting as the HPARAMS tab shows it: tuples as ``16-16``, numbers as floats, booleans
    and strings as they are."""
    if isinstance(value, tuple):
        return "-".join(map(str, value))
    if isinstance(value, bool | str):
        return value
    return float(value)


def _protobuf_value(value) -> struct_pb2.Value:
    if isinstance(value, bool):
        return struct_pb2.Value(bool_value=value)
    if isinstance(value, str):
        return struct_pb2.Value(string_value=value)
    return struct_pb2.Value(number_value=value)


def _summary(tag: str, data: plugin_data_pb2.HParamsPluginData) -> Summary:
    return Summary(value=[Summary.Value(tag=tag, metadata=metadata.create_summary_metadata(data))])


def hparam_infos(group: list[TrainingSettings], differing: list[str]) -> list[api_pb2.HParamInfo]:
    """One column per training setting: its type, its domain (the choices, or the values the
    group takes) and whether it is in ``differing``."""
    infos = []
    for field in dataclasses.fields(TrainingSettings):
        values = sorted({hparam_value(getattr(settings, field.name)) for settings in group})
        info = api_pb2.HParamInfo(
            name=field.name,
            description=field.metadata["help"],
            differs=field.name in differing,
        )
        if isinstance(values[0], bool):
            info.type = api_pb2.DATA_TYPE_BOOL
            info.domain_discrete.values.extend(_protobuf_value(v) for v in (False, True))
        elif isinstance(values[0], str):
            info.type = api_pb2.DATA_TYPE_STRING
            choices = field.metadata["choices"] or values
            info.domain_discrete.values.extend(_protobuf_value(v) for v in choices)
        else:
            info.type = api_pb2.DATA_TYPE_FLOAT64
            info.domain_interval.min_value, info.domain_interval.max_value = values[0], values[-1]
        infos.append(info)
    return infos


def metric_names(with_validation: bool) -> list[str]:
    return [tag for tag in METRICS if with_validation or "validation" not in tag]


def experiment_summary(group: list[TrainingSettings], differing: list[str]) -> Summary:
    """The experiment definition of ``group``: every training setting, those in ``differing``
    marked, and the metrics (validation accuracy when any run of the group holds a set out)."""
    metrics = [
        api_pb2.MetricInfo(
            name=api_pb2.MetricName(tag=tag),
            display_name=METRICS[tag][0],
            description=METRICS[tag][1],
        )
        for tag in metric_names(any(settings.validation_size for settings in group))
    ]
    experiment = api_pb2.Experiment(
        hparam_infos=hparam_infos(group, differing),
        metric_infos=metrics,
        time_created_secs=time.time(),
    )
    return _summary(
        metadata.EXPERIMENT_TAG, plugin_data_pb2.HParamsPluginData(experiment=experiment)
    )


def session_start_summary(settings: TrainingSettings, trial: str) -> Summary:
    """A run's values of every training setting, under the trial name the table shows."""
    start = plugin_data_pb2.SessionStartInfo(group_name=trial, start_time_secs=time.time())
    for name, value in to_dict(settings).items():
        start.hparams[name].CopyFrom(_protobuf_value(hparam_value(value)))
    return _summary(
        metadata.SESSION_START_INFO_TAG,
        plugin_data_pb2.HParamsPluginData(session_start_info=start),
    )


def session_end_summary(outcome: str) -> Summary:
    end = plugin_data_pb2.SessionEndInfo(status=STATUS[outcome], end_time_secs=time.time())
    return _summary(
        metadata.SESSION_END_INFO_TAG, plugin_data_pb2.HParamsPluginData(session_end_info=end)
    )
