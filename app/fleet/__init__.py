"""The fleet: which queue a job goes to, and which workers are alive to take it.

- ``routing``: queues follow hardware. A worker listens to the queues of the hardware it detected
  (``cpu``, ``cpu.<model>``, ``cpu.<model>.t<threads>``; ``cuda``, ``cuda.<model>``, ``cuda.<model>.x<n>``), the
  default queue (settings.queue) and any its operator names; the API sends a job to the queue its spec asks for
  (train.device, train.hardware), or to the default queue. Celery's queues are the routing table.
- ``registry``: the ``worker`` table. Each worker (`dynds worker`, the embedded executor of `dynds serve`)
  registers at start under a stable identity (host, node name) and heartbeats; GET /api/v1/workers lists them,
  and submissions are told when no live worker serves what they ask for.

The worker side (hardware detection, the heartbeat thread) is worker/fleet.py.
"""
