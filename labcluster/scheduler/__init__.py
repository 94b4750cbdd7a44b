"""What runs inside the scheduler: labcluster's one extension (its state and handlers) and the plugins it installs.

``LabclusterSchedulerPlugin`` installs :class:`~labcluster.scheduler.extension.LabclusterExtension` as
``scheduler.extensions["labcluster"]``. The extension owns every piece of scheduler-side state labcluster keeps
(actors, placement groups, holder tasks, task records, workers that left) and registers the ``labcluster_*``
handlers through which the client API, the dashboards and the Jupyter server extension read and change it, with
plain (msgpack-able) messages. Nothing here imports the client side (``labcluster.api``).
"""
