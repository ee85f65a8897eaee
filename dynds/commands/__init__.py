"""The service's commands: `dynds serve`, `dynds worker`, `dynds submit`, `dynds token`, `dynds retention`.

    dynds serve --port 8000                                  # API + embedded executor (no broker set)
    dynds worker --broker-url redis://localhost:6379/0 --queue gpu
    dynds submit job.yaml --server http://host:8000 --wait --min-time-saving 0.1 --max-acc-drop 0.5
    dynds token create ci
    dynds retention --dry-run

Each module defines ``add_parsers(sub)``; heavy imports happen inside the commands so that
``dynds --help`` stays instant and ``dynds submit`` needs only httpx (dynds/client.py).
"""

SERVICE_COMMANDS = (
    "dynds.commands.serve",
    "dynds.commands.worker",
    "dynds.commands.submit",
    "dynds.commands.token",
    "dynds.commands.retention",
)
